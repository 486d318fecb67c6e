"""The Ray backend: Ray Serve deployments whose replicas each run the sandboxed replica
process on their node (:mod:`.serve` the backend, :mod:`.replica` the Serve replica,
:mod:`.worker` its host of the sandboxed worker, :mod:`.relay` the authenticated relay to
it, :mod:`.direct` calls straight to the workers). Ray's private calls are all in
:mod:`.private`."""

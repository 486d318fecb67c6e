"""Several servers on one PostgreSQL database: the controller's lease and its election
(:mod:`.leases`, :mod:`.election`), a server's membership wired to its runtime
(:mod:`.member`), the backend built only once a server leads (:mod:`.leader_backend`),
followers' calls forwarded or sent straight to the leader's replicas (:mod:`.forward`,
:mod:`.direct`, :mod:`.ray_follow`), and the change feed that keeps every server's memory in
step with the others' writes (:mod:`.change_feed`)."""

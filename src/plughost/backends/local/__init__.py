"""The local backend: replicas as sandboxed processes on this machine. The backend
(:mod:`.backend`) starts groups (:mod:`.group`) of replica processes (:mod:`.replica`,
launched by :mod:`.launch`), adopts the ones an earlier server left (:mod:`.adopt`,
:mod:`.registry`, :mod:`.adopted`), scales them (:mod:`.autoscale`, :mod:`.spare`) and
keeps their output (:mod:`.output`)."""

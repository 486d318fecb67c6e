"""The ``plughost`` command: the server and admin commands (:mod:`.main`), the plugin
author's commands (:mod:`.author`) and the batch job commands (:mod:`.batch`)."""

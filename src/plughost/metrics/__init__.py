"""Prometheus metrics and the dashboard's recent figures.

:mod:`.requests` counts inference calls on the fast path (plain integers, no locks: the
event loop is the only writer); :mod:`.collector` turns them, the controller's replica
groups and the releases table into Prometheus families at scrape time; :mod:`.series`
samples them every few seconds for the dashboard's charts."""

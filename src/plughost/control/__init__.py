"""The reconcile loop: desired state (releases table) vs observed replicas (backend)."""

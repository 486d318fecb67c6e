"""The in-memory route table: route names -> replica groups, swapped atomically."""

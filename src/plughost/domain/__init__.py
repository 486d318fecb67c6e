"""Pure rules: identifiers, versions, deployment states. No I/O here."""

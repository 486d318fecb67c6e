"""Use cases. They call domain rules and the adapters; the API and the controller call them."""

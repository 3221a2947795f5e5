"""The user's model: the template contract (schema, loss, optimizer) and loading it from a file."""

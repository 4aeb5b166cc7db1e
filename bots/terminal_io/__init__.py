"""The terminal chat's input (prompt_toolkit), output (rich, or plain text for a pipe) and logs."""

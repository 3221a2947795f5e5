"""What the `hvd-online` subcommands run: train (one rank), run (launch and supervise),
produce, export, check."""

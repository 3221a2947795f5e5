"""Everything that talks to a Pulsar broker: the client, the embedded pulsar-lite broker,
per-partition readers and durable cursors, producers and the sinks (dead letters,
predictions). The rest of streams/ needs no broker."""

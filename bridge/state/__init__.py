"""Local durable state: the checkpoint store and the dead-letter file."""

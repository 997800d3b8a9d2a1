"""The linked records: the table schema, file input/output, reading (readers/), checking (validate),
pseudonymising (privacy) and generating (synth/) them."""

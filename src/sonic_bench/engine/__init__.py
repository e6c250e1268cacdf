"""The load engine: prepared requests on the wire and their answers judged.

Everything that speaks a protocol to the server for a measurement lives here, so that it
can be held to the protocols by one conformance suite (`tests/test_conformance*.py`,
scripted peers built on `h2` and `h11`). `triton/` keeps what talks to Triton itself
through tritonclient (health, metadata, statistics, shared-memory registration)."""

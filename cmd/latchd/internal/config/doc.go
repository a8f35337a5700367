// Package config reads latchd's configuration file and turns it into a
// lockserver.Config.
//
// The file is JSON, decoded strictly: an unknown field, a value of the wrong
// type or trailing data is an error. Durations are Go duration strings
// ("3s", "250ms"). Command-line flags override the file's fields (see
// Overrides). Every problem is reported as a *FieldError that names the
// field ("nodes[1].peer", "lease") and the reason, and wraps ErrConfig.
//
// A minimal file:
//
//	{
//	  "nodes": [
//	    {"id": 1, "peer": "10.0.0.1:7001", "client": "10.0.0.1:7101", "http": "10.0.0.1:7201"},
//	    {"id": 2, "peer": "10.0.0.2:7001", "client": "10.0.0.2:7101", "http": "10.0.0.2:7201"},
//	    {"id": 3, "peer": "10.0.0.3:7001", "client": "10.0.0.3:7101", "http": "10.0.0.3:7201"}
//	  ],
//	  "myid": 1,
//	  "dataDir": "/var/lib/latch"
//	}
//
// docs/operations.md is the reference of every field.
package config

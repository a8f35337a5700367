module github.com/latchd/latch

go 1.26

require (
	github.com/anishathalye/porcupine v1.3.1 // indirect
	github.com/armon/go-radix v1.0.0 // indirect
	github.com/golang/snappy v0.0.4 // indirect
	github.com/hashicorp/yamux v0.1.2 // indirect
	github.com/syndtr/goleveldb v1.0.1-0.20220721030215-126854af5e6d // indirect
	github.com/vmihailenco/msgpack/v5 v5.4.1 // indirect
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	pgregory.net/rapid v1.3.0 // indirect
)

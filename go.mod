module github.com/latchd/latch

go 1.26

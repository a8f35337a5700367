package cellstat

import (
	"slices"
	"testing"
)

func TestLags(t *testing.T) {
	tests := []struct {
		name string
		in   []Replica
		want []uint64
	}{
		{"behind the leader", []Replica{{10, true, true}, {7, true, false}, {10, true, false}}, []uint64{0, 3, 0}},
		{"leader unreachable: behind the most advanced", []Replica{{0, false, true}, {5, true, false}, {9, true, false}}, []uint64{0, 4, 0}},
		{"unreachable members get none", []Replica{{10, true, true}, {0, false, false}}, []uint64{0, 0}},
		{"a follower ahead of the leader's answer", []Replica{{4, true, true}, {6, true, false}}, []uint64{0, 0}},
		{"none", nil, []uint64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Lags(len(tt.in), func(i int) Replica { return tt.in[i] })
			if !slices.Equal(got, tt.want) {
				t.Errorf("Lags = %v; want %v", got, tt.want)
			}
		})
	}
}

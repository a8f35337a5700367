package session

import "time"

// timerHeap is an indexed min-heap of session entries ordered by key, the
// time at or before which the entry needs attention (its KeepAlive's
// deadline or its lease's end). Keys may be earlier than the real due time
// (raising a key is done lazily, by Tick), never later.
type timerHeap[E any] []*entry[E]

func (h timerHeap[E]) less(i, j int) bool { return h[i].key < h[j].key }

func (h timerHeap[E]) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *timerHeap[E]) push(e *entry[E]) {
	e.index = len(*h)
	*h = append(*h, e)
	h.up(e.index)
}

// remove takes e out of the heap.
func (h *timerHeap[E]) remove(e *entry[E]) {
	i := e.index
	if i < 0 {
		return
	}
	last := len(*h) - 1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = nil
	*h = (*h)[:last]
	e.index = -1
	if i != last {
		h.fix(i)
	}
}

// setKey changes e's key and restores the heap order.
func (h *timerHeap[E]) setKey(e *entry[E], key time.Duration) {
	e.key = key
	if e.index >= 0 {
		h.fix(e.index)
	}
}

func (h timerHeap[E]) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h timerHeap[E]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h timerHeap[E]) down(i0 int) bool {
	i, n := i0, len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && h.less(r, l) {
			j = r
		}
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}

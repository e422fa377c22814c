package sched

// Flow table geometry: 64 queues per member, 8-way set-associative as in
// CAKE. A member's table exists only while the member is on a list.
const (
	flowsPerMember = 64
	flowWays       = 8
	maxTablePool   = 1024 // spare tables kept for reuse per direction
)

// flowQ is one inner-flow queue of a member. Slot and flow indices are
// 1-based so that the zero value is an empty, unlisted queue.
type flowQ struct {
	head, tail sidx
	bytes      int64 // queued on-wire bytes
	pkts       int32
	deficit    int32
	cd         codel
	next       int8 // 1-based index of the next queue in its list
	list       uint8
}

// flowTable is a member's set of flow queues. The queues come first: a
// flowQ fits a cache line and tables are allocated in a size class that is
// a multiple of 64 bytes, so each queue is one line rather than straddling
// two. The tags sit apart so a lookup reads one line. The list heads live
// in the member's mstate (flowLists): one dependent load fewer per dequeue.
type flowTable struct {
	flows [flowsPerMember]flowQ
	// tags[i] is flow hash | 1 of queue i's current owner; 0 = never used.
	tags [flowsPerMember]uint32
}

// pick returns the 1-based index of the queue for hash: the way whose tag
// matches, else an empty way (claimed, with fresh CoDel state), else the
// hash-chosen way of the set (a collision, confined to this member).
func (ft *flowTable) pick(hash uint64) int8 {
	set := int(hash>>61) * flowWays
	tag := uint32(hash) | 1
	tags := (*[flowWays]uint32)(ft.tags[set : set+flowWays])
	for w, t := range tags {
		if t == tag {
			return int8(set + w + 1)
		}
	}
	for w := range flowWays {
		f := &ft.flows[set+w]
		if f.pkts == 0 {
			tags[w] = tag
			f.cd = codel{}
			return int8(set + w + 1)
		}
	}
	return int8(set + int(hash&(flowWays-1)) + 1)
}

func (ft *flowTable) flow(fi int8) *flowQ { return &ft.flows[fi-1] }

// flowLists are a member's DRR++ lists of flow queues over its flowTable.
// They live in the member's mstate, not in the table: a dequeue finds the
// queue to serve without first loading a table line.
type flowLists struct {
	newq, oldq flist
}

// flist is one list of flow queues, linked through flowQ.next (1-based
// indices, 0 = none). It caches what a dequeue would otherwise read from
// the head queue's cache line: the queue after it and whether its deficit
// is spent. With a one-packet quantum nearly every turn starts by passing
// over a spent head; with the cache the next queue's line is requested
// straight away instead of after the head's line arrives.
type flist struct {
	head, tail int8
	second     int8 // ft.flow(head).next; 0 if head is 0
	spent      bool // head's deficit is ≤ 0 (false: unknown, read it)
}

// push appends queue fi, marking it as on list (listNew or listOld).
func (l *flist) push(ft *flowTable, fi int8, list uint8) {
	f := ft.flow(fi)
	f.next, f.list = 0, list
	if l.tail == 0 {
		l.head, l.spent = fi, false
	} else {
		ft.flow(l.tail).next = fi
		if l.head == l.tail {
			l.second = fi
		}
	}
	l.tail = fi
}

// pop unlinks the head and returns it.
func (l *flist) pop(ft *flowTable) int8 {
	fi := l.head
	l.head, l.spent = l.second, false
	if l.head == 0 {
		l.tail, l.second = 0, 0
	} else {
		l.second = ft.flow(l.head).next
	}
	return fi
}

// rotate moves the head to the tail (pop then push, in fewer steps).
func (l *flist) rotate(ft *flowTable) {
	l.spent = false
	fi := l.head
	if fi == l.tail {
		return
	}
	ft.flow(fi).next = 0
	ft.flow(l.tail).next = fi
	l.tail = fi
	l.head = l.second
	l.second = ft.flow(l.head).next
}

// fattest returns the 1-based index of the queue with the most bytes.
func (ft *flowTable) fattest() int8 {
	best, bestBytes := int8(0), int64(0)
	for i := range ft.flows {
		if b := ft.flows[i].bytes; b > bestBytes {
			best, bestBytes = int8(i+1), b
		}
	}
	return best
}

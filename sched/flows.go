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
	next       int8 // 1-based flow index in the member's new/old list
	list       uint8
}

// flowTable is a member's set of flow queues and its DRR++ lists. The
// tags sit apart from the queues so a lookup reads one cache line.
type flowTable struct {
	newHead, newTail, oldHead, oldTail int8 // 1-based, 0 = empty
	// tags[i] is flow hash | 1 of queue i's current owner; 0 = never used.
	tags  [flowsPerMember]uint32
	flows [flowsPerMember]flowQ
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

func (ft *flowTable) pushNew(fi int8) {
	f := ft.flow(fi)
	f.next, f.list = 0, listNew
	if ft.newTail == 0 {
		ft.newHead = fi
	} else {
		ft.flow(ft.newTail).next = fi
	}
	ft.newTail = fi
}

func (ft *flowTable) pushOld(fi int8) {
	f := ft.flow(fi)
	f.next, f.list = 0, listOld
	if ft.oldTail == 0 {
		ft.oldHead = fi
	} else {
		ft.flow(ft.oldTail).next = fi
	}
	ft.oldTail = fi
}

// popHead unlinks the head of the new list (fromNew) or of the old list.
func (ft *flowTable) popHead(fromNew bool) int8 {
	if fromNew {
		fi := ft.newHead
		ft.newHead = ft.flow(fi).next
		if ft.newHead == 0 {
			ft.newTail = 0
		}
		return fi
	}
	fi := ft.oldHead
	ft.oldHead = ft.flow(fi).next
	if ft.oldHead == 0 {
		ft.oldTail = 0
	}
	return fi
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

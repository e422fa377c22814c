package metrics

import (
	"sync"
	"testing"
	"time"
)

// TestScrapesDuringRefresh: scrapes, top and the sampler hit the table at
// once while members change (run with -race).
func TestScrapesDuringRefresh(t *testing.T) {
	reg, src, clk := fullRegistry(t, 300, 0)
	var writer, scrapers sync.WaitGroup
	stop := make(chan struct{})
	writer.Add(1)
	go func() { // the data path: counters move, members come and go
		defer writer.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			src.set(func(ms []MemberCounters) []MemberCounters {
				for j := range ms {
					ms[j].TxBytes += uint64(j)
				}
				if i%10 == 0 {
					ms = append(ms[1:], ms[0])
				}
				return ms
			})
			clk.add(300 * time.Millisecond)
		}
	}()
	for range 3 {
		scrapers.Add(1)
		go func() {
			defer scrapers.Done()
			for range 20 {
				if _, err := reg.Gather(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	scrapers.Wait()
	close(stop)
	writer.Wait()
}

// TestServerCloseIdempotent: Close twice does not panic or hang.
func TestServerCloseIdempotent(t *testing.T) {
	reg, _, _ := fullRegistry(t, 1, 0)
	s, err := Listen("127.0.0.1:0", reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close(t.Context())
	s.Close(t.Context())
}

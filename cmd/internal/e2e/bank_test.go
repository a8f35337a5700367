package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/cmd/internal/testutil"
)

// The bank (Jepsen's bank test with latch's transactions): accounts
// /bank-w<window>/<i> hold decimal balances; clients move random amounts
// between random pairs, each transfer a Get of both accounts (noting their
// content generations) and one Txn:
//
//	IfExists(from, IfGeneration(genFrom)), IfExists(to, IfGeneration(genTo)),
//	OpPut(from, balFrom-amount), OpPut(to, balTo+amount),
//	OpCreate(/bank-w<window>/log/<transfer id>)
//
// retried with fresh reads when another transfer got there first. The log
// node, written in the same txn, says which transfers applied, so the
// check can replay them: see bankWorkload.check.

// bankAccounts and bankInitial are the size of a bank and each account's
// first balance.
const (
	bankAccounts = 5
	bankInitial  = 100
)

// transferOutcome is what a transfer's Txn returned.
type transferOutcome int

const (
	transferPending  transferOutcome = iota // sent, no answer yet
	transferApplied                         // acknowledged
	transferConflict                        // failed a generation check: applied nothing
	transferUnknown                         // failed as the cell was unreachable: applied or not
)

// transfer is one Txn of the bank: amount from one account to another, on
// the balances and generations the client read.
type transfer struct {
	id       string
	accounts [2]int    // from, to
	gens     [2]uint64 // content generations read
	balances [2]int64  // balances read
	amount   int64
	outcome  transferOutcome
}

// bankWorkload is clients making transfers in the bank of the current
// window; a new window (nextWindow) opens a new bank, and a bank whose
// window is over can be checked (check) and forgotten.
type bankWorkload struct {
	cell    *procCell
	window  atomic.Int64
	done    atomic.Int64 // transfers acknowledged
	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup
	creator *client.Client // opens the banks

	mu        sync.Mutex
	transfers map[int64]map[string]*transfer // by window, then id
	checked   int64                          // windows below it are checked
	errs      []error
}

// bankPath returns the path of account i of window win's bank, or of its
// log with i < 0.
func bankPath(win int64, i int) string {
	if i < 0 {
		return fmt.Sprintf("/bank-w%d/log", win)
	}
	return fmt.Sprintf("/bank-w%d/%d", win, i)
}

// startBankWorkload opens the bank of window 0 and starts clients that
// make at most maxTransfers attempts each.
func startBankWorkload(t *testing.T, ctx context.Context, cell *procCell, clients, maxTransfers int) *bankWorkload {
	t.Helper()
	w := &bankWorkload{cell: cell, transfers: map[int64]map[string]*transfer{}, creator: cell.dial(ctx)}
	w.ctx, w.stop = context.WithCancel(ctx)
	w.open(t, 0)
	for id := range clients {
		c := cell.dial(ctx)
		w.wg.Go(func() { w.client(c, id, maxTransfers) })
	}
	return w
}

// open creates the bank of window win in one txn: every account with
// bankInitial, and the log.
func (w *bankWorkload) open(t *testing.T, win int64) {
	t.Helper()
	ops := []client.TxnOp{client.OpCreate(bankPath(win, -1), nil, client.CreateParents())}
	for i := range bankAccounts {
		ops = append(ops, client.OpCreate(bankPath(win, i), []byte(strconv.Itoa(bankInitial))))
	}
	ctx, cancel := context.WithTimeout(w.ctx, time.Minute)
	defer cancel()
	if _, err := w.creator.Txn(ctx, ops...); err != nil {
		t.Fatalf("opening the bank of window %d: %v", win, err)
	}
	w.mu.Lock()
	w.transfers[win] = map[string]*transfer{}
	w.mu.Unlock()
}

// nextWindow opens a new bank and moves the clients to it.
func (w *bankWorkload) nextWindow(t *testing.T) {
	t.Helper()
	w.open(t, w.window.Load()+1)
	w.window.Add(1)
}

func (w *bankWorkload) fail(err error) {
	w.mu.Lock()
	w.errs = append(w.errs, err)
	w.mu.Unlock()
}

// readAccount reads account i of window win: its balance and content
// generation. ok is false if the read failed (the cell unreachable); a
// balance that is not a non-negative decimal is an error of the test.
func (w *bankWorkload) readAccount(c *client.Client, win int64, i int) (bal int64, gen uint64, ok bool) {
	ctx, cancel := context.WithTimeout(w.ctx, 5*time.Second)
	defer cancel()
	n, err := c.Get(ctx, bankPath(win, i))
	if err != nil {
		if !errors.Is(err, client.ErrUnavailable) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, client.ErrCanceled) {
			w.fail(fmt.Errorf("Get %s: %w", bankPath(win, i), err))
		}
		return 0, 0, false
	}
	bal, err = strconv.ParseInt(string(n.Data), 10, 64)
	if err != nil || bal < 0 {
		w.fail(fmt.Errorf("%s holds %q (generation %d): not a balance", bankPath(win, i), n.Data, n.Stat.ContentGen))
		return 0, 0, false
	}
	return bal, n.Stat.ContentGen, true
}

// client makes transfers, one at a time, until the workload stops or it
// made max attempts. It also checks that the generations it reads of an
// account never go back.
func (w *bankWorkload) client(c *client.Client, id, max int) {
	rng := rand.New(rand.NewPCG(uint64(id), 17))
	seen := map[[2]int64]uint64{} // (window, account) -> the latest generation this client saw
	for n := 0; n < max && w.ctx.Err() == nil; n++ {
		win := w.window.Load()
		tr := &transfer{id: fmt.Sprintf("c%d-%d", id, n)}
		tr.accounts[0] = rng.IntN(bankAccounts)
		tr.accounts[1] = (tr.accounts[0] + 1 + rng.IntN(bankAccounts-1)) % bankAccounts
		ok := true
		for j, a := range tr.accounts {
			var read bool
			tr.balances[j], tr.gens[j], read = w.readAccount(c, win, a)
			ok = ok && read
			if key := [2]int64{win, int64(a)}; read && tr.gens[j] < seen[key] {
				w.fail(fmt.Errorf("client %d read generation %d of %s after generation %d", id, tr.gens[j], bankPath(win, a), seen[key]))
			} else if read {
				seen[key] = tr.gens[j]
			}
		}
		if !ok || tr.balances[0] == 0 {
			continue
		}
		tr.amount = 1 + rng.Int64N(tr.balances[0])
		from, to := bankPath(win, tr.accounts[0]), bankPath(win, tr.accounts[1])
		w.mu.Lock()
		w.transfers[win][tr.id] = tr
		w.mu.Unlock()
		ctx, cancel := context.WithTimeout(w.ctx, 5*time.Second)
		_, err := c.Txn(ctx,
			client.IfExists(from, client.IfGeneration(tr.gens[0])),
			client.IfExists(to, client.IfGeneration(tr.gens[1])),
			client.OpPut(from, []byte(strconv.FormatInt(tr.balances[0]-tr.amount, 10))),
			client.OpPut(to, []byte(strconv.FormatInt(tr.balances[1]+tr.amount, 10))),
			client.OpCreate(bankPath(win, -1)+"/"+tr.id, nil))
		cancel()
		var te *client.TxnError
		outcome := transferApplied
		switch {
		case err == nil:
			w.done.Add(1)
			for j, a := range tr.accounts {
				seen[[2]int64{win, int64(a)}] = tr.gens[j] + 1
			}
		case errors.As(err, &te) && te.Op < 2 && errors.Is(err, client.ErrGenerationMismatch):
			outcome = transferConflict
		case errors.Is(err, client.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
			errors.Is(err, client.ErrCanceled), errors.Is(err, client.ErrInternal):
			outcome = transferUnknown
		default:
			w.fail(fmt.Errorf("transfer %s: %w", tr.id, err))
			outcome = transferUnknown
		}
		w.mu.Lock()
		tr.outcome = outcome
		w.mu.Unlock()
	}
}

// progress waits up to a minute for 20 more acknowledged transfers.
func (w *bankWorkload) progress(t *testing.T, what string) {
	t.Helper()
	base := w.done.Load()
	testutil.WaitFor(t, 60*time.Second, what, func() bool { return w.done.Load() >= base+20 })
}

// bankSnapshot is a bank as one moment of the cell saw it.
type bankSnapshot struct {
	balances [bankAccounts]int64
	gens     [bankAccounts]uint64
	log      []string // ids of the transfers applied
}

// snapshot reads the bank of window win: the accounts, the log, and the
// accounts again, until the two reads agree (every transfer changes two
// accounts' generations, so none applied in between).
func (w *bankWorkload) snapshot(t *testing.T, ctx context.Context, c *client.Client, win int64) bankSnapshot {
	t.Helper()
	read := func() (s bankSnapshot) {
		for i := range bankAccounts {
			rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			n, err := c.Get(rctx, bankPath(win, i))
			cancel()
			if err != nil {
				t.Fatalf("Get %s: %v", bankPath(win, i), err)
			}
			bal, err := strconv.ParseInt(string(n.Data), 10, 64)
			if err != nil || bal < 0 {
				t.Fatalf("%s holds %q (generation %d): not a balance", bankPath(win, i), n.Data, n.Stat.ContentGen)
			}
			s.balances[i], s.gens[i] = bal, n.Stat.ContentGen
		}
		return s
	}
	for range 20 {
		s := read()
		lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		log, err := c.List(lctx, bankPath(win, -1))
		cancel()
		if err != nil {
			t.Fatalf("List %s: %v", bankPath(win, -1), err)
		}
		if read().gens == s.gens {
			s.log = log
			return s
		}
	}
	t.Fatalf("the bank of window %d kept changing after its window ended", win)
	return bankSnapshot{}
}

// check checks the banks of windows up to upTo not checked yet, and
// forgets them:
//   - the balances are decimals and add up to what the bank opened with;
//   - every acknowledged transfer is in the log, and every transfer in the
//     log was acknowledged or has an unknown outcome (a conflict applied
//     nothing, the log node included);
//   - each account's content generation is 1 + the transfers of the log
//     that touch it, and those transfers read its generations 1, 2, ...
//     once each (no two applied on the same generation: no lost update)
//     and, replayed in that order from the opening balance, read the
//     balance they saw and end at the account's balance.
//
// It also reports what the clients found wrong as they went: a read
// generation that went back, a balance that is not one, an unexpected
// error.
func (w *bankWorkload) check(t *testing.T, ctx context.Context, upTo int64) {
	t.Helper()
	w.mu.Lock()
	errs := w.errs
	w.errs = nil
	w.mu.Unlock()
	for _, err := range errs {
		t.Errorf("bank: %v", err)
	}
	for ; w.checked <= upTo; w.checked++ {
		win := w.checked
		s := w.snapshot(t, ctx, w.creator, win)
		w.mu.Lock()
		trs := w.transfers[win]
		delete(w.transfers, win)
		w.mu.Unlock()
		w.checkBank(t, win, s, trs)
	}
}

func (w *bankWorkload) checkBank(t *testing.T, win int64, s bankSnapshot, trs map[string]*transfer) {
	t.Helper()
	var total int64
	for _, b := range s.balances {
		total += b
	}
	if total != bankAccounts*bankInitial {
		t.Errorf("bank %d: balances %v add up to %d; want %d", win, s.balances, total, bankAccounts*bankInitial)
	}
	logged := map[string]bool{}
	var applied []*transfer
	for _, id := range s.log {
		logged[id] = true
		switch tr := trs[id]; {
		case tr == nil:
			t.Errorf("bank %d: the log has transfer %s, which no client made", win, id)
		case tr.outcome == transferConflict:
			t.Errorf("bank %d: transfer %s failed a generation check but is in the log: a failed txn applied (%+v)", win, id, *tr)
		default:
			applied = append(applied, tr)
		}
	}
	counts := map[transferOutcome]int{}
	for id, tr := range trs {
		counts[tr.outcome]++
		if tr.outcome == transferApplied && !logged[id] {
			t.Errorf("bank %d: acknowledged transfer %s is not in the log (%+v)", win, id, *tr)
		}
	}
	// Replay each account's chain of transfers.
	for a := range bankAccounts {
		var chain []*transfer
		side := map[*transfer]int{}
		for _, tr := range applied {
			for j, acc := range tr.accounts {
				if acc == a {
					chain = append(chain, tr)
					side[tr] = j
				}
			}
		}
		slices.SortFunc(chain, func(x, y *transfer) int { return int(x.gens[side[x]]) - int(y.gens[side[y]]) })
		bal := int64(bankInitial)
		for k, tr := range chain {
			j := side[tr]
			if gen := tr.gens[j]; gen != uint64(k+1) {
				t.Errorf("bank %d account %d: applied transfer %s wrote on generation %d; want %d (applied transfers by the generation they read: ... %s ...)",
					win, a, tr.id, gen, k+1, describeChain(chain, side, k))
				break
			}
			if tr.balances[j] != bal {
				t.Errorf("bank %d account %d: transfer %s read balance %d at generation %d; replay says %d", win, a, tr.id, tr.balances[j], tr.gens[j], bal)
				break
			}
			if j == 0 {
				bal -= tr.amount
			} else {
				bal += tr.amount
			}
		}
		if s.gens[a] != uint64(len(chain)+1) || s.balances[a] != bal {
			t.Errorf("bank %d account %d: balance %d at generation %d; the %d transfers of the log replay to %d at generation %d",
				win, a, s.balances[a], s.gens[a], len(chain), bal, len(chain)+1)
		}
	}
	t.Logf("bank %d: %d transfers applied (%d acknowledged, %d of %d unknown outcomes), %d conflicts; balances %v",
		win, len(applied), counts[transferApplied], len(applied)-counts[transferApplied], counts[transferUnknown]+counts[transferPending],
		counts[transferConflict], s.balances)
}

// describeChain lists the transfers of an account around chain[k], each
// with the generation it read of the account.
func describeChain(chain []*transfer, side map[*transfer]int, k int) string {
	var out []string
	for _, tr := range chain[max(0, k-3):min(len(chain), k+4)] {
		out = append(out, fmt.Sprintf("%s@%d", tr.id, tr.gens[side[tr]]))
	}
	return strings.Join(out, " ")
}

// finish stops the clients and checks every bank not checked yet.
func (w *bankWorkload) finish(t *testing.T, ctx context.Context) {
	t.Helper()
	w.stop()
	w.wg.Wait()
	w.check(t, ctx, w.window.Load())
}

// TestBankUnderFaults: clients move money between the accounts of a bank
// with transactions (a compare-and-set of both balances on their content
// generations, and a log node) while the leader is cut off from its
// followers, then killed with SIGKILL and restarted, then a follower is
// cut off. Once the faults are healed the bank must add up, every
// acknowledged transfer must be in it, and the log of applied transfers
// must replay to every account's balance and generation (bankWorkload.check).
func TestBankUnderFaults(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cell := startProcCell(t, ctx, cellOptions{proxied: true})
	w := startBankWorkload(t, ctx, cell, 4, 100_000)
	progress := func(what string) { t.Helper(); w.progress(t, "transfers "+what) }
	progress("before the faults")
	isolateLeader(t, ctx, cell, progress)
	killLeader(t, ctx, cell, progress)

	follower := cell.other(cell.leader(ctx))
	cell.isolate(follower, true)
	progress("while a follower is cut off")
	cell.isolate(follower, false)
	for _, n := range cell.nodes {
		cell.caughtUp(ctx, n)
	}
	progress("after every replica caught up")
	w.finish(t, ctx)
}

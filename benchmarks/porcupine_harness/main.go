// Command porcupine-harness checks one JSON Lines history (the format of
// trio_foundation.verify.history) with Porcupine, in process, so that
// benchmarks/bench_lincheck.py can compare the two checkers on the SAME
// history. It is built by the benchmark against a local checkout of
// Porcupine (go mod edit -replace); it is not part of the library.
//
// Usage: porcupine-harness MODEL FILE TIMEOUT_SECONDS
//
// MODEL is "kv" (Porcupine's key-value model from its own tests: get, put and
// append of strings, every key starting at "", partitioned by key),
// "cas-register" (Porcupine's etcd model: read, write and cas of integers,
// nil for no value; also used for "register") or "kv-register" (the etcd
// model per key, get and put of integers). Operations are converted as
// Porcupine's own Jepsen parser does: an info completion of a write or cas, or
// an invocation never completed, returns at the end of the history with an
// unknown output; an info read returns in place, unknown (it had no effect);
// a failed cas returns "fail" in place; any other failed operation took no
// effect and is left out.
//
// It prints one JSON object: the verdict, the checking time (wall clock and
// CPU, parsing excluded) and the peak RSS of the process.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/anishathalye/porcupine"
)

type line struct {
	Process int             `json:"process"`
	Type    string          `json:"type"`
	F       string          `json:"f"`
	Key     json.RawMessage `json:"key"`
	Value   json.RawMessage `json:"value"`
}

const nilValue = -1 << 62 // the register's "no value"

type regInput struct {
	op         uint8 // 0 read, 1 write, 2 cas
	arg1, arg2 int64
	key        string // kv-register: the key (raw JSON)
}

type regOutput struct {
	ok, unknown bool
	value       int64
}

func regInt(raw json.RawMessage) int64 {
	if len(raw) == 0 || string(raw) == "null" {
		return nilValue
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		panic(fmt.Sprintf("not an integer value: %s", raw))
	}
	return n
}

var registerModel = porcupine.Model{
	Init: func() interface{} { return int64(nilValue) },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		st := state.(int64)
		inp := input.(regInput)
		out := output.(regOutput)
		switch inp.op {
		case 0:
			return out.unknown || out.value == st, state
		case 1:
			return true, inp.arg1
		default:
			matches := inp.arg1 == st
			next := st
			if matches {
				next = inp.arg2
			}
			return out.unknown || matches == out.ok, next
		}
	},
}

// byKey partitions a history by the key keyOf gives each call.
func byKey(keyOf func(interface{}) string) func([]porcupine.Event) [][]porcupine.Event {
	return func(history []porcupine.Event) [][]porcupine.Event {
		groups := make(map[string][]porcupine.Event)
		callKey := make(map[int]string)
		var order []string
		for _, ev := range history {
			var key string
			if ev.Kind == porcupine.CallEvent {
				key = keyOf(ev.Value)
				callKey[ev.Id] = key
			} else {
				key = callKey[ev.Id]
			}
			if _, seen := groups[key]; !seen {
				order = append(order, key)
			}
			groups[key] = append(groups[key], ev)
		}
		out := make([][]porcupine.Event, 0, len(order))
		for _, key := range order {
			out = append(out, groups[key])
		}
		return out
	}
}

type kvInput struct {
	op         uint8 // 0 get, 1 put, 2 append
	key, value string
}

type kvOutput struct {
	value   string
	unknown bool
}

var kvModel = porcupine.Model{
	PartitionEvent: byKey(func(v interface{}) string { return v.(kvInput).key }),
	Init:           func() interface{} { return "" },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		st := state.(string)
		inp := input.(kvInput)
		out := output.(kvOutput)
		switch inp.op {
		case 0:
			return out.unknown || out.value == st, state
		case 1:
			return true, inp.value
		default:
			return true, st + inp.value
		}
	},
	Hash: func(state interface{}) uint64 {
		h := fnv.New64a()
		h.Write([]byte(state.(string)))
		return h.Sum64()
	},
}

func str(raw json.RawMessage) string {
	var s string
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		panic(fmt.Sprintf("not a string: %s", raw))
	}
	return s
}

func input(model string, l line) interface{} {
	if model == "kv" {
		op := map[string]uint8{"get": 0, "put": 1, "append": 2}[l.F]
		return kvInput{op: op, key: str(l.Key), value: str(l.Value)}
	}
	key := string(l.Key)
	switch l.F {
	case "read", "get":
		return regInput{op: 0, key: key}
	case "write", "put":
		return regInput{op: 1, arg1: regInt(l.Value), key: key}
	default:
		var pair []json.RawMessage
		if err := json.Unmarshal(l.Value, &pair); err != nil || len(pair) != 2 {
			panic(fmt.Sprintf("cas value is not a pair: %s", l.Value))
		}
		return regInput{op: 2, arg1: regInt(pair[0]), arg2: regInt(pair[1]), key: key}
	}
}

func output(model string, l line, unknown bool) interface{} {
	if model == "kv" {
		if unknown {
			return kvOutput{unknown: true}
		}
		return kvOutput{value: str(l.Value)}
	}
	if unknown {
		return regOutput{unknown: true}
	}
	if l.F == "read" || l.F == "get" {
		return regOutput{value: regInt(l.Value)}
	}
	return regOutput{ok: l.Type == "ok"}
}

func load(model, path string) []porcupine.Event {
	file, err := os.Open(path)
	if err != nil {
		panic(err)
	}
	defer file.Close()
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 1<<20), 1<<24)
	var events []porcupine.Event
	drop := make(map[int]bool)   // ids of operations that took no effect
	open := make(map[int]int)    // process -> id of its outstanding call
	var pending []int            // ids returning at the end, unknown
	callOf := make(map[int]line) // id -> its invocation
	id := 0
	for scanner.Scan() {
		if len(scanner.Bytes()) == 0 {
			continue
		}
		var l line
		if err := json.Unmarshal(scanner.Bytes(), &l); err != nil {
			panic(err)
		}
		if l.Type == "invoke" {
			events = append(events, porcupine.Event{ClientId: l.Process, Kind: porcupine.CallEvent, Value: input(model, l), Id: id})
			open[l.Process] = id
			callOf[id] = l
			id++
			continue
		}
		match := open[l.Process]
		delete(open, l.Process)
		call := callOf[match]
		switch {
		case l.Type == "info" && (call.F == "read" || call.F == "get"):
			// a read that timed out had no effect: it returns in place, as
			// Porcupine's own Jepsen parser does with timed-out reads
			events = append(events, porcupine.Event{ClientId: l.Process, Kind: porcupine.ReturnEvent, Value: output(model, call, true), Id: match})
		case l.Type == "info":
			pending = append(pending, match)
		case l.Type == "fail" && l.F != "cas":
			drop[match] = true
		default:
			events = append(events, porcupine.Event{ClientId: l.Process, Kind: porcupine.ReturnEvent, Value: output(model, l, false), Id: match})
		}
	}
	if err := scanner.Err(); err != nil {
		panic(err)
	}
	for _, match := range open {
		pending = append(pending, match)
	}
	for _, match := range pending {
		call := callOf[match]
		events = append(events, porcupine.Event{ClientId: call.Process, Kind: porcupine.ReturnEvent, Value: output(model, call, true), Id: match})
	}
	kept := events[:0]
	for _, ev := range events {
		if !drop[ev.Id] {
			kept = append(kept, ev)
		}
	}
	return kept
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: porcupine-harness MODEL FILE TIMEOUT_SECONDS")
		os.Exit(2)
	}
	model := os.Args[1]
	if model == "register" {
		model = "cas-register"
	}
	timeout, err := strconv.ParseFloat(os.Args[3], 64)
	if err != nil {
		panic(err)
	}
	events := load(model, os.Args[2])
	var checked porcupine.Model
	switch model {
	case "kv":
		checked = kvModel
	case "kv-register":
		checked = registerModel
		checked.PartitionEvent = byKey(func(v interface{}) string { return v.(regInput).key })
	default:
		checked = registerModel
	}
	startCPU := cpuSeconds()
	start := time.Now()
	result := porcupine.CheckEventsTimeout(checked, events, time.Duration(timeout*float64(time.Second)))
	wall := time.Since(start).Seconds()
	cpu := cpuSeconds() - startCPU
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	verdict := map[porcupine.CheckResult]string{
		porcupine.Ok: "linearizable", porcupine.Illegal: "not-linearizable", porcupine.Unknown: "unknown",
	}[result]
	out, _ := json.Marshal(map[string]interface{}{
		"verdict": verdict, "seconds": wall, "cpu_seconds": cpu,
		"rss_mb": float64(ru.Maxrss) / 1024, "events": len(events),
	})
	fmt.Println(string(out))
}

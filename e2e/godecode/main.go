// godecode: decodes request bodies the way Ollama does, for the e2e attack
// suite (e2e/test_attack_models.py). Standard library only.
//
// Input, one JSON object per line on stdin:
//
//	{"path": "/api/chat", "body_b64": "<base64 of the body bytes>"}
//
// Output, one JSON line per input line:
//
//	{"ok": true, "fields": {"model": "…", …}, "files": false, "adapters": false, …}
//	{"ok": false, "error": "…"}
//
// A path not listed below is decoded as a body naming only `model`
// ("generic": true).
//
// Ollama's handlers bind with gin's ShouldBindJSON, which is
// json.NewDecoder(body).Decode(&req): the first JSON value only (trailing
// data ignored), object keys matched to struct fields exactly first, else
// case-insensitively with Unicode folding, the last matching key winning,
// a type error reported after the rest is decoded (Ollama then answers 400
// and runs nothing, so such a body is "ok": false here).
//
// Folding differs between Go releases: up to Go 1.20, encoding/json compares
// with bytes.EqualFold (ſ U+017F ~ s, K U+212A ~ k); from Go 1.21 on — what
// real Ollama builds use — it compares unicode.ToUpper(unicode.ToLower(r)),
// which also makes İ U+0130 and ı U+0131 ~ i. "fields" is what a Go ≥ 1.21
// build reads: before decoding, every top-level key that folds to a field
// name under the Go ≥ 1.21 rule but not under this toolchain's is renamed to
// the field's exact name, order and duplicates kept (a no-op on Go ≥ 1.21).
// "fields_plain" is this toolchain's json.Decoder as is. A caller judging
// what an upstream might run should check both.
//
// The structs carry the tags of ollama/ollama api/types.go and
// openai/openai.go (model-naming fields plus a few others).
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"runtime"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ── api/types.go ─────────────────────────────────────────────────────────

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type GenerateRequest struct {
	Model   string         `json:"model"`
	Prompt  string         `json:"prompt"`
	Suffix  string         `json:"suffix"`
	System  string         `json:"system"`
	Stream  *bool          `json:"stream,omitempty"`
	Options map[string]any `json:"options"`
}

type ChatRequest struct {
	Model    string         `json:"model"`
	Messages []Message      `json:"messages"`
	Stream   *bool          `json:"stream,omitempty"`
	Options  map[string]any `json:"options"`
}

type EmbedRequest struct {
	Model   string         `json:"model"`
	Input   any            `json:"input"`
	Options map[string]any `json:"options"`
}

type EmbeddingRequest struct {
	Model   string         `json:"model"`
	Prompt  string         `json:"prompt"`
	Options map[string]any `json:"options"`
}

type CreateRequest struct {
	Model      string            `json:"model"`
	Stream     *bool             `json:"stream,omitempty"`
	Quantize   string            `json:"quantize,omitempty"`
	From       string            `json:"from,omitempty"`
	RemoteHost string            `json:"remote_host,omitempty"`
	Files      map[string]string `json:"files,omitempty"`
	DraftFiles map[string]string `json:"draft_files,omitempty"`
	Adapters   map[string]string `json:"adapters,omitempty"`
	Template   string            `json:"template,omitempty"`
	System     string            `json:"system,omitempty"`
	Name       string            `json:"name"` // Deprecated in Ollama: use Model
}

type DeleteRequest struct {
	Model string `json:"model"`
	Name  string `json:"name"` // Deprecated
}

type ShowRequest struct {
	Model    string         `json:"model"`
	System   string         `json:"system"`
	Template string         `json:"template"`
	Verbose  bool           `json:"verbose"`
	Options  map[string]any `json:"options"`
	Name     string         `json:"name"` // Deprecated
}

type CopyRequest struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
}

type PullRequest struct {
	Model    string `json:"model"`
	Insecure bool   `json:"insecure,omitempty"`
	Username string `json:"username"`
	Password string `json:"password"`
	Stream   *bool  `json:"stream,omitempty"`
	Name     string `json:"name"` // Deprecated
}

type PushRequest PullRequest

// ── openai/openai.go (the /v1 compatibility layer) ───────────────────────

type OpenAIMessage struct {
	Role    string `json:"role"`
	Content any    `json:"content"`
	Name    string `json:"name,omitempty"`
}

type ChatCompletionRequest struct {
	Model       string          `json:"model"`
	Messages    []OpenAIMessage `json:"messages"`
	Stream      bool            `json:"stream"`
	MaxTokens   *int            `json:"max_tokens"`
	Temperature *float64        `json:"temperature"`
}

type CompletionRequest struct {
	Model     string `json:"model"`
	Prompt    string `json:"prompt"`
	Stream    bool   `json:"stream"`
	MaxTokens *int   `json:"max_tokens"`
}

type OpenAIEmbedRequest struct {
	Input          any    `json:"input"`
	Model          string `json:"model"`
	Dimensions     int    `json:"dimensions,omitempty"`
	EncodingFormat string `json:"encoding_format,omitempty"`
}

// openai/responses.go, anthropic/anthropic.go: only the model matters here.
type ModelOnlyRequest struct {
	Model string `json:"model"`
}

// ── the endpoints ────────────────────────────────────────────────────────

// endpoint: a fresh struct for the path, and what to report from it.
type endpoint struct {
	new    func() any
	report func(v any, out *result)
}

func modelOnly(get func(any) string) func(any, *result) {
	return func(v any, out *result) { out.Fields = map[string]string{"model": get(v)} }
}

var endpoints = map[string]endpoint{
	"/api/generate":   {func() any { return &GenerateRequest{} }, modelOnly(func(v any) string { return v.(*GenerateRequest).Model })},
	"/api/chat":       {func() any { return &ChatRequest{} }, modelOnly(func(v any) string { return v.(*ChatRequest).Model })},
	"/api/embed":      {func() any { return &EmbedRequest{} }, modelOnly(func(v any) string { return v.(*EmbedRequest).Model })},
	"/api/embeddings": {func() any { return &EmbeddingRequest{} }, modelOnly(func(v any) string { return v.(*EmbeddingRequest).Model })},
	"/api/create": {func() any { return &CreateRequest{} }, func(v any, out *result) {
		r := v.(*CreateRequest)
		out.Fields = map[string]string{"model": r.Model, "name": r.Name, "from": r.From}
		// CreateHandler: `else if r.Files != nil` (a present, non-null map, even empty).
		out.Files = boolp(r.Files != nil)
		out.Adapters = boolp(r.Adapters != nil)
		out.DraftFiles = boolp(r.DraftFiles != nil)
		out.RemoteHost = &r.RemoteHost
	}},
	"/api/copy": {func() any { return &CopyRequest{} }, func(v any, out *result) {
		r := v.(*CopyRequest)
		out.Fields = map[string]string{"source": r.Source, "destination": r.Destination}
	}},
	"/api/pull": {func() any { return &PullRequest{} }, func(v any, out *result) {
		r := v.(*PullRequest)
		out.Fields = map[string]string{"model": r.Model, "name": r.Name}
	}},
	"/api/push": {func() any { return &PushRequest{} }, func(v any, out *result) {
		r := v.(*PushRequest)
		out.Fields = map[string]string{"model": r.Model, "name": r.Name}
	}},
	"/api/delete": {func() any { return &DeleteRequest{} }, func(v any, out *result) {
		r := v.(*DeleteRequest)
		out.Fields = map[string]string{"model": r.Model, "name": r.Name}
	}},
	"/api/show": {func() any { return &ShowRequest{} }, func(v any, out *result) {
		r := v.(*ShowRequest)
		out.Fields = map[string]string{"model": r.Model, "name": r.Name}
	}},
	"/v1/chat/completions": {func() any { return &ChatCompletionRequest{} }, modelOnly(func(v any) string { return v.(*ChatCompletionRequest).Model })},
	"/v1/completions":      {func() any { return &CompletionRequest{} }, modelOnly(func(v any) string { return v.(*CompletionRequest).Model })},
	"/v1/embeddings":       {func() any { return &OpenAIEmbedRequest{} }, modelOnly(func(v any) string { return v.(*OpenAIEmbedRequest).Model })},
	"/v1/responses":        {func() any { return &ModelOnlyRequest{} }, modelOnly(func(v any) string { return v.(*ModelOnlyRequest).Model })},
	"/v1/messages":         {func() any { return &ModelOnlyRequest{} }, modelOnly(func(v any) string { return v.(*ModelOnlyRequest).Model })},
}

func boolp(b bool) *bool { return &b }

type result struct {
	OK          bool              `json:"ok"`
	Error       string            `json:"error,omitempty"`
	Fields      map[string]string `json:"fields,omitempty"`
	FieldsPlain map[string]string `json:"fields_plain,omitempty"`
	Files       *bool             `json:"files,omitempty"`
	Adapters    *bool             `json:"adapters,omitempty"`
	DraftFiles  *bool             `json:"draft_files,omitempty"`
	RemoteHost  *string           `json:"remote_host,omitempty"`
	PlainError  string            `json:"plain_error,omitempty"`
	Generic     bool              `json:"generic,omitempty"`
	GoVersion   string            `json:"go_version"`
}

// ── Go ≥ 1.21 key folding ────────────────────────────────────────────────

// foldName is Go ≥ 1.21's encoding/json fold: unicode.ToUpper(unicode.ToLower(r))
// per rune (ASCII letters upper-cased).
func foldName(in string) string {
	var b strings.Builder
	for _, r := range in {
		if r < utf8.RuneSelf {
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
			b.WriteRune(r)
			continue
		}
		b.WriteRune(unicode.ToUpper(unicode.ToLower(r)))
	}
	return b.String()
}

// jsonNames: the JSON names of a struct's fields (the name part of each tag).
func jsonNames(v any) []string {
	t := reflect.TypeOf(v)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" {
			name = t.Field(i).Name
		}
		if name != "-" {
			names = append(names, name)
		}
	}
	return names
}

// rewriteKeys returns the body with every top-level key that Go ≥ 1.21 folds
// to one of names (and is not already equal to it under this toolchain's
// matching) renamed to that name; the rest byte for byte. A body that is not
// an object, or that the tokenizer cannot walk, is returned unchanged.
func rewriteKeys(body []byte, names []string) []byte {
	folded := map[string]string{}
	for _, n := range names {
		folded[foldName(n)] = n
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return body
	}
	var out bytes.Buffer
	out.WriteByte('{')
	first := true
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return body
		}
		key, ok := kt.(string)
		if !ok {
			return body
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return body
		}
		if n, hit := folded[foldName(key)]; hit && !strings.EqualFold(key, n) && !oldFold(key, n) {
			key = n
		}
		if !first {
			out.WriteByte(',')
		}
		first = false
		kb, _ := json.Marshal(key)
		out.Write(kb)
		out.WriteByte(':')
		out.Write(val)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return body
	}
	out.WriteByte('}')
	// What followed the first value (ignored by Decode, kept for fidelity).
	rest, _ := io.ReadAll(dec.Buffered())
	out.Write(rest)
	return out.Bytes()
}

// oldFold: bytes.EqualFold, the comparison of Go ≤ 1.20.
func oldFold(a, b string) bool { return bytes.EqualFold([]byte(a), []byte(b)) }

// ── decoding ─────────────────────────────────────────────────────────────

func decode(ep endpoint, body []byte) (any, error) {
	v := ep.new()
	// gin's ShouldBindJSON: json.NewDecoder(req.Body).Decode(obj).
	err := json.NewDecoder(bytes.NewReader(body)).Decode(v)
	if errors.Is(err, io.EOF) {
		return nil, errors.New("missing request body")
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

func handle(path string, body []byte) result {
	res := result{GoVersion: runtime.Version()}
	ep, ok := endpoints[path]
	if !ok {
		// Any other path: read as a body naming its model in `model` (the
		// conservative reading for a judge; Ollama itself may ignore it).
		ep = endpoints["/v1/responses"]
		res.Generic = true
	}
	// What this toolchain's decoder reads.
	var plain result
	if v, err := decode(ep, body); err != nil {
		res.PlainError = err.Error()
	} else {
		ep.report(v, &plain)
		res.FieldsPlain = plain.Fields
	}
	// What a Go ≥ 1.21 build (real Ollama) reads.
	v, err := decode(ep, rewriteKeys(body, jsonNames(ep.new())))
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.OK = true
	ep.report(v, &res)
	return res
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for in.Scan() {
		line := bytes.TrimSpace(in.Bytes())
		if len(line) == 0 {
			continue
		}
		var req struct {
			Path    string `json:"path"`
			BodyB64 string `json:"body_b64"`
		}
		var res result
		if err := json.Unmarshal(line, &req); err != nil {
			res = result{Error: "bad input line: " + err.Error(), GoVersion: runtime.Version()}
		} else if body, err := base64.StdEncoding.DecodeString(req.BodyB64); err != nil {
			res = result{Error: "bad body_b64: " + err.Error(), GoVersion: runtime.Version()}
		} else {
			res = handle(req.Path, body)
		}
		_ = enc.Encode(res)
		out.Flush()
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "godecode:", err)
		os.Exit(1)
	}
}

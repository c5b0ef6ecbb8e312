package ingest

import "encoding/json"

func jsonMarshal(v any) ([]byte, error)       { return json.Marshal(v) }
func jsonMarshalIndent(v any) ([]byte, error) { return json.MarshalIndent(v, "", "   ") }

// Package events is the shared vocabulary of ottu-recon: the two kinds of Ottu
// webhook (payment and operation), their decoding from what Ottu really sends,
// signature verification, the content-derived delivery id and the envelope that
// carries a delivery from ingest to reconcile.
//
// The specification of the outside world is docs/ottu-webhooks.md; section
// numbers in comments (§n) refer to it.
//
// The package imports no infrastructure library (no NATS, ClickHouse, cron or
// logging). Amounts are exact decimals (shopspring/decimal), never floats.
package events

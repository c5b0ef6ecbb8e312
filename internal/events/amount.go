package events

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/shopspring/decimal"
)

// MaxScale is the number of decimals the store keeps. Ottu amounts have at most
// 3 (docs/ottu-webhooks.md, "Amounts": KWD, BHD, OMR, ...; the operation API
// caps amounts at 3 decimals); an amount with more than MaxScale significant
// decimals is refused instead of being rounded, so that nothing is ever stored
// inexactly.
const MaxScale = 8

// MaxIntegerDigits is how many integer digits the store's Decimal(38, 8)
// holds: 38 digits of precision, 8 of them decimals.
const MaxIntegerDigits = 38 - MaxScale

// maxAmount is the exclusive upper bound of a storable amount: 10^30.
var maxAmount = decimal.New(1, MaxIntegerDigits)

// Amount is an exact decimal amount as Ottu sent it, a JSON string ("25.500")
// or a JSON number (§6, §8.6). Valid is false when the field was absent, null or
// the empty string.
type Amount struct {
	Decimal decimal.Decimal
	Valid   bool
}

// String renders the amount as the canonical decimal text, or "" when absent.
func (a Amount) String() string {
	if !a.Valid {
		return ""
	}
	return a.Decimal.String()
}

// Equal compares numerically: "5.000" equals "5". Two absent amounts are equal.
func (a Amount) Equal(b Amount) bool {
	if a.Valid != b.Valid {
		return false
	}
	return !a.Valid || a.Decimal.Equal(b.Decimal)
}

// ParseAmount parses s as an amount Ottu sends ("" is absent), with the
// checks of decoding: a storable, non-negative decimal.
func ParseAmount(s string) (Amount, error) { return parseAmount(s) }

func parseAmount(s string) (Amount, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Amount{}, nil
	}
	if len(s) > maxAmountText {
		// Never hand a huge token to the decimal parser (its cost grows
		// faster than the length); nothing this long fits Decimal(38, 8).
		return Amount{}, fmt.Errorf("not a storable decimal: %d characters", len(s))
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return Amount{}, fmt.Errorf("not a decimal: %q", s)
	}
	if d.Sign() < 0 {
		return Amount{}, fmt.Errorf("negative: %q", s)
	}
	if d.Abs().Cmp(maxAmount) >= 0 {
		return Amount{}, fmt.Errorf("more than %d integer digits: %q", MaxIntegerDigits, s)
	}
	if d.Exponent() < -MaxScale {
		// Trailing zeros beyond the scale are harmless ("1.0000000000").
		if !d.Equal(d.Truncate(MaxScale)) {
			return Amount{}, fmt.Errorf("more than %d decimals: %q", MaxScale, s)
		}
		d = d.Truncate(MaxScale)
	}
	return Amount{Decimal: d, Valid: true}, nil
}

// maxAmountText bounds the text of an amount: 30 integer digits, a point, up
// to 8 decimals plus trailing zeros, a sign, and room for an exponent form.
const maxAmountText = 64

// amountValue converts a decoded JSON value (decoded with UseNumber) to an Amount.
func amountValue(v any) (Amount, error) {
	switch x := v.(type) {
	case nil:
		return Amount{}, nil
	case string:
		return parseAmount(x)
	case json.Number:
		return parseAmount(x.String())
	default:
		return Amount{}, fmt.Errorf("want a decimal string or number, got %T", v)
	}
}

// MarshalJSON writes the amount as a JSON string, or null when absent.
func (a Amount) MarshalJSON() ([]byte, error) {
	if !a.Valid {
		return []byte("null"), nil
	}
	return json.Marshal(a.Decimal.String())
}

// UnmarshalJSON accepts a string, a number or null.
func (a *Amount) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return err
	}
	x, err := amountValue(v)
	if err != nil {
		return err
	}
	*a = x
	return nil
}

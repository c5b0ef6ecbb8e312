package events

import "errors"

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrNotObject means the body is not a single JSON object.
	ErrNotObject = errors.New("body is not a JSON object")
	// ErrUnknownKind means the object is neither a payment nor an operation webhook.
	ErrUnknownKind = errors.New("not a payment or operation webhook")
	// ErrInvalidField means a field Ottu documents has a value that cannot be used
	// (an amount that is not a decimal, a timestamp in no documented format).
	ErrInvalidField = errors.New("invalid field")
	// ErrMissingSignature means the delivery carries no signature at all.
	ErrMissingSignature = errors.New("signature missing")
	// ErrBadSignature means the signature matches no configured key under either scheme.
	ErrBadSignature = errors.New("signature matches no key")
	// ErrNoKeys means verification was attempted without any key.
	ErrNoKeys = errors.New("no hmac key configured")
)

// FieldError names the field that made a webhook unusable. It wraps ErrInvalidField.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return "field " + e.Field + ": " + e.Err.Error() }

// Unwrap lets errors.Is(err, ErrInvalidField) match.
func (e *FieldError) Unwrap() []error { return []error{ErrInvalidField, e.Err} }

package ledger

// Share is share, for its table test.
var Share = share

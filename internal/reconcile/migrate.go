package reconcile

import (
	"context"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
)

// Migrate creates or upgrades the schema, then fills the indexes a
// migration added for the rows stored before it (clickhouse.DB.Backfill),
// logging each partition: `reconcile migrate`.
func (m *Main) Migrate(ctx context.Context) (clickhouse.MigrateResult, error) {
	res, err := m.db.Migrate(ctx)
	if err != nil {
		return res, err
	}
	return res, m.db.Backfill(ctx, m.logBackfill)
}

func (m *Main) logBackfill(p clickhouse.BackfillProgress) {
	log := m.component("migrate")
	if p.Source == "" {
		log.Info().Int("version", p.Version).Msg("backfill complete")
		return
	}
	log.Info().Int("version", p.Version).Str("table", p.Source).Uint32("partition", p.Partition).
		Uint64("rows", p.Rows).Dur("took", p.Took).Msg("backfilled a partition")
}

// backfill runs clickhouse.DB.Backfill beside storing, again after a
// failure, until it is complete or ctx ends: until then passes find changes
// without the new indexes.
func (m *Main) backfill(ctx context.Context) {
	log := m.component("migrate")
	for wait := time.Second; ; wait = min(2*wait, time.Minute) {
		err := m.db.Backfill(ctx, m.logBackfill)
		if err == nil || ctx.Err() != nil {
			return
		}
		log.Warn().Err(err).Dur("retry_in", wait).Msg("backfill failed; passes find changes without its index meanwhile")
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

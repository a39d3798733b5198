package engine

import (
	"context"
	"time"

	"github.com/extrasphere/extrasphere/internal/repo"
)

// BackupInfo describes one backup for listings.
type BackupInfo struct {
	ID      string            `json:"id"`
	Time    time.Time         `json:"time"`
	Host    string            `json:"host,omitempty"`
	Group   string            `json:"group,omitempty"`
	Volumes []BackupVolume    `json:"volumes"`
	Stats   repo.BackupStats  `json:"stats"`
	Keep    []string          `json:"keep,omitempty"` // prune: the rules that keep it
	Meta    map[string]string `json:"-"`
}

// BackupVolume is one volume of a backup.
type BackupVolume struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

func backupInfo(m *repo.Manifest) BackupInfo {
	in := BackupInfo{ID: m.ID, Time: m.Time, Host: m.Host, Group: m.Group, Stats: m.Stats}
	for _, v := range m.Volumes {
		in.Volumes = append(in.Volumes, BackupVolume{Name: v.Name, Size: v.Size})
	}
	return in
}

// ListBackups lists a repository's backups, oldest first.
func (e *Engine) ListBackups(ctx context.Context, repoName string) ([]BackupInfo, error) {
	r, err := e.useRepo(ctx, repoName)
	if err != nil {
		return nil, err
	}
	ms, err := r.Summaries(ctx)
	if err != nil {
		return nil, repoError(repoName, err)
	}
	out := []BackupInfo{}
	for _, m := range ms {
		out = append(out, backupInfo(m))
	}
	return out, nil
}

// VerifyReport is the answer of VerifyBackups.
type VerifyReport struct {
	Result   *repo.VerifyResult `json:"result"`
	Problems []string           `json:"problems"` // each names backup, volume, offset and chunk where it can
}

// VerifyBackups checks a repository: every backup decodes and every chunk
// it references exists; with readData every chunk is read and checked.
func (e *Engine) VerifyBackups(ctx context.Context, repoName string, readData bool) (VerifyReport, error) {
	r, err := e.useRepo(ctx, repoName)
	if err != nil {
		return VerifyReport{}, err
	}
	rep := VerifyReport{Problems: []string{}}
	res, err := r.Verify(ctx, repo.VerifyOptions{ReadData: readData}, func(p error) {
		rep.Problems = append(rep.Problems, p.Error())
	})
	if err != nil {
		return VerifyReport{}, repoError(repoName, err)
	}
	rep.Result = res
	return rep, nil
}

// PruneRequest applies a retention policy.
type PruneRequest struct {
	Repo        string `json:"repo,omitempty"`
	KeepLast    int    `json:"keep_last,omitempty"`
	KeepHourly  int    `json:"keep_hourly,omitempty"`
	KeepDaily   int    `json:"keep_daily,omitempty"`
	KeepWeekly  int    `json:"keep_weekly,omitempty"`
	KeepMonthly int    `json:"keep_monthly,omitempty"`
	KeepYearly  int    `json:"keep_yearly,omitempty"`
	DryRun      bool   `json:"dry_run,omitempty"`
}

// PruneReport is the answer of PruneBackups.
type PruneReport struct {
	Keep   []BackupInfo     `json:"keep"`
	Forget []BackupInfo     `json:"forget"`
	Stats  *repo.PruneStats `json:"stats,omitempty"` // nil for a dry run
}

// PruneBackups forgets the backups no rule of the policy keeps (per
// group: the volumes backed up together) and sweeps the chunks no backup
// references any more. An empty policy is refused (it would keep all,
// which is surely not what was meant).
func (e *Engine) PruneBackups(ctx context.Context, req PruneRequest) (PruneReport, error) {
	p := repo.Policy{KeepLast: req.KeepLast, KeepHourly: req.KeepHourly, KeepDaily: req.KeepDaily,
		KeepWeekly: req.KeepWeekly, KeepMonthly: req.KeepMonthly, KeepYearly: req.KeepYearly}
	if p.Empty() {
		return PruneReport{}, errorf(ErrInvalidArgument, "prune: give at least one --keep-* rule")
	}
	r, err := e.useRepo(ctx, req.Repo)
	if err != nil {
		return PruneReport{}, err
	}
	ms, err := r.Summaries(ctx)
	if err != nil {
		return PruneReport{}, repoError(req.Repo, err)
	}
	plan := repo.PlanPrune(ms, p, now())
	rep := PruneReport{Keep: []BackupInfo{}, Forget: []BackupInfo{}}
	for _, m := range plan.Keep {
		in := backupInfo(m)
		in.Keep = plan.Reasons[m.ID]
		rep.Keep = append(rep.Keep, in)
	}
	for _, m := range plan.Forget {
		rep.Forget = append(rep.Forget, backupInfo(m))
	}
	if req.DryRun {
		return rep, nil
	}
	st, err := r.Prune(ctx, plan.ForgetIDs())
	if err != nil {
		return PruneReport{}, repoError(req.Repo, err)
	}
	rep.Stats = st
	e.log.Info("prune done", "repository", req.Repo, "forgot", len(rep.Forget), "chunks_deleted", st.ChunksDeleted)
	return rep, nil
}

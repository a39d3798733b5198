package backup

import (
	"context"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/repo"
)

func backupInfo(m *repo.Manifest) apischema.BackupInfo {
	in := apischema.BackupInfo{ID: m.ID, Time: m.Time, Host: m.Host, Group: m.Group, Stats: apischema.BackupStats(m.Stats)}
	for _, v := range m.Volumes {
		in.Volumes = append(in.Volumes, apischema.BackupVolume{Name: v.Name, Size: v.Size})
	}
	return in
}

// List lists a repository's backups, oldest first.
func (s *Service) List(ctx context.Context, repoName string) ([]apischema.BackupInfo, error) {
	r, err := s.host.Repo(ctx, repoName)
	if err != nil {
		return nil, err
	}
	ms, err := r.Summaries(ctx)
	if err != nil {
		return nil, RepoError(repoName, err)
	}
	out := []apischema.BackupInfo{}
	for _, m := range ms {
		out = append(out, backupInfo(m))
	}
	return out, nil
}

// Verify checks a repository: every backup decodes and every chunk
// it references exists; with readData every chunk is read and checked.
func (s *Service) Verify(ctx context.Context, repoName string, readData bool) (apischema.VerifyReport, error) {
	r, err := s.host.Repo(ctx, repoName)
	if err != nil {
		return apischema.VerifyReport{}, err
	}
	rep := apischema.VerifyReport{Problems: []string{}}
	res, err := r.Verify(ctx, repo.VerifyOptions{ReadData: readData}, func(p error) {
		rep.Problems = append(rep.Problems, p.Error())
	})
	if err != nil {
		return apischema.VerifyReport{}, RepoError(repoName, err)
	}
	rep.Result = (*apischema.VerifyResult)(res)
	return rep, nil
}

// Prune forgets the backups no rule of the policy keeps (per
// group: the volumes backed up together) and sweeps the chunks no backup
// references any more. An empty policy is refused (it would keep all,
// which is surely not what was meant).
func (s *Service) Prune(ctx context.Context, req apischema.PruneRequest) (apischema.PruneReport, error) {
	p := repo.Policy{KeepLast: req.KeepLast, KeepHourly: req.KeepHourly, KeepDaily: req.KeepDaily,
		KeepWeekly: req.KeepWeekly, KeepMonthly: req.KeepMonthly, KeepYearly: req.KeepYearly}
	if p.Empty() {
		return apischema.PruneReport{}, errkind.Errorf(errkind.ErrInvalidArgument, "prune: give at least one --keep-* rule")
	}
	r, err := s.host.Repo(ctx, req.Repo)
	if err != nil {
		return apischema.PruneReport{}, err
	}
	ms, err := r.Summaries(ctx)
	if err != nil {
		return apischema.PruneReport{}, RepoError(req.Repo, err)
	}
	plan := repo.PlanPrune(ms, p, time.Now().UTC())
	rep := apischema.PruneReport{Keep: []apischema.BackupInfo{}, Forget: []apischema.BackupInfo{}}
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
		return apischema.PruneReport{}, RepoError(req.Repo, err)
	}
	rep.Stats = (*apischema.PruneStats)(st)
	s.log.Info("prune done", "repository", req.Repo, "forgot", len(rep.Forget), "chunks_deleted", st.ChunksDeleted)
	return rep, nil
}

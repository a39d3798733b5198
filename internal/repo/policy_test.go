package repo

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestPlanPrune(t *testing.T) {
	day := func(d, h int) time.Time { return time.Date(2026, 3, 1+d, h, 0, 0, 0, time.UTC) }
	mk := func(group string, ts ...time.Time) []*Manifest {
		var ms []*Manifest
		for i, ts := range ts {
			ms = append(ms, &Manifest{ID: fmt.Sprintf("%s-%02d", group, i), Group: group, Time: ts})
		}
		return ms
	}
	// vm1: two backups a day for 10 days (at 06 and 18); vm2: one a week for 6 weeks.
	var vm1, vm2 []time.Time
	for d := range 10 {
		vm1 = append(vm1, day(d, 6), day(d, 18))
	}
	for w := range 6 {
		vm2 = append(vm2, day(7*w, 12))
	}
	all := append(mk("vm1", vm1...), mk("vm2", vm2...)...)
	ids := func(ms []*Manifest) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.ID)
		}
		slices.Sort(out)
		return out
	}
	now := day(12, 0)
	tests := []struct {
		name string
		p    Policy
		keep []string
	}{
		{"Empty", Policy{}, ids(all)},
		{"Last", Policy{KeepLast: 2}, []string{"vm1-18", "vm1-19", "vm2-04", "vm2-05"}},
		// Daily keeps the newest of each day: the 18:00 one.
		{"Daily", Policy{KeepDaily: 3}, []string{"vm1-15", "vm1-17", "vm1-19", "vm2-03", "vm2-04", "vm2-05"}},
		{"LastAndDaily", Policy{KeepLast: 1, KeepDaily: 2}, []string{"vm1-17", "vm1-19", "vm2-04", "vm2-05"}},
		// 2026-03-01 is a Sunday: ISO weeks 9 (day 0), 10 (1..7), 11 (8..9).
		{"Weekly", Policy{KeepWeekly: 2}, []string{"vm1-15", "vm1-19", "vm2-04", "vm2-05"}},
		{"Monthly", Policy{KeepMonthly: 5}, []string{"vm1-19", "vm2-04", "vm2-05"}},
		{"Yearly", Policy{KeepYearly: 1}, []string{"vm1-19", "vm2-05"}},
		{"Hourly", Policy{KeepHourly: 1}, []string{"vm1-19", "vm2-05"}},
		// Within is relative to each group's newest backup.
		{"Within", Policy{KeepWithin: 25 * time.Hour}, []string{"vm1-17", "vm1-18", "vm1-19", "vm2-05"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := PlanPrune(all, tc.p, now)
			got, want := ids(plan.Keep), tc.keep
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("kept %v, want %v", got, want)
			}
			if len(plan.Keep)+len(plan.Forget) != len(all) {
				t.Fatalf("%d kept + %d forgotten != %d", len(plan.Keep), len(plan.Forget), len(all))
			}
			for _, m := range plan.Keep {
				if len(plan.Reasons[m.ID]) == 0 {
					t.Errorf("%s kept without a reason", m.ID)
				}
			}
			for _, m := range plan.Forget {
				if len(plan.Reasons[m.ID]) != 0 || slices.Contains(want, m.ID) {
					t.Errorf("%s forgotten with reasons %v", m.ID, plan.Reasons[m.ID])
				}
			}
			if got := plan.ForgetIDs(); len(got) != len(plan.Forget) {
				t.Errorf("ForgetIDs: %v", got)
			}
		})
	}
	// Calendar buckets are in now's location: 23:30 UTC on the 1st is the
	// 2nd in UTC+2, so the two backups fall in different days there.
	a := &Manifest{ID: "a", Time: time.Date(2026, 3, 1, 23, 30, 0, 0, time.UTC)}
	b := &Manifest{ID: "b", Time: time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC)}
	if got := PlanPrune([]*Manifest{a, b}, Policy{KeepDaily: 2}, time.Now().UTC()); len(got.Keep) != 1 {
		t.Errorf("UTC: kept %d, want 1 (same day)", len(got.Keep))
	}
	if got := PlanPrune([]*Manifest{a, b}, Policy{KeepDaily: 2}, time.Now().In(time.FixedZone("X", 2*3600))); len(got.Keep) != 2 {
		t.Errorf("UTC+2: kept %d, want 2 (different days)", len(got.Keep))
	}
}

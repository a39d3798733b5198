package repo

import (
	"fmt"
	"slices"
	"time"
)

// Policy says which backups prune keeps, per group, with restic's
// semantics: a backup kept by any rule is kept. KeepLast keeps the n
// newest. KeepHourly/Daily/Weekly/Monthly/Yearly keep the newest backup of
// each of the last n hours/days/ISO weeks/months/years that have one.
// KeepWithin keeps every backup younger than that, relative to the newest
// backup of the group (so a paused schedule does not lose everything). A
// zero Policy keeps everything.
type Policy struct {
	KeepLast    int
	KeepHourly  int
	KeepDaily   int
	KeepWeekly  int
	KeepMonthly int
	KeepYearly  int
	KeepWithin  time.Duration
}

// Empty reports whether the policy has no rule (and keeps everything).
func (p Policy) Empty() bool { return p == Policy{} }

// Plan is PlanPrune's answer. Keep and Forget are newest first; Reasons
// lists, for each kept id, the rules that keep it.
type Plan struct {
	Keep    []*Manifest
	Forget  []*Manifest
	Reasons map[string][]string
}

// ForgetIDs are the ids to pass to Prune.
func (p *Plan) ForgetIDs() []string {
	ids := make([]string, len(p.Forget))
	for i, m := range p.Forget {
		ids[i] = m.ID
	}
	return ids
}

// PlanPrune applies p to each group of ms. Calendar buckets (hour, day,
// week, month, year) are taken in now's location. It is a pure function.
func PlanPrune(ms []*Manifest, p Policy, now time.Time) *Plan {
	plan := &Plan{Reasons: map[string][]string{}}
	sorted := slices.Clone(ms)
	sortManifests(sorted)
	slices.Reverse(sorted) // newest first
	groups := map[string][]*Manifest{}
	var order []string
	for _, m := range sorted {
		if _, ok := groups[m.Group]; !ok {
			order = append(order, m.Group)
		}
		groups[m.Group] = append(groups[m.Group], m)
	}
	loc := now.Location()
	type rule struct {
		name   string
		n      int
		bucket func(time.Time) string
	}
	rules := []rule{
		{"hourly", p.KeepHourly, func(t time.Time) string { return t.Format("2006-01-02 15") }},
		{"daily", p.KeepDaily, func(t time.Time) string { return t.Format("2006-01-02") }},
		{"weekly", p.KeepWeekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-%02d", y, w) }},
		{"monthly", p.KeepMonthly, func(t time.Time) string { return t.Format("2006-01") }},
		{"yearly", p.KeepYearly, func(t time.Time) string { return t.Format("2006") }},
	}
	for _, g := range order {
		list := groups[g]
		for i, m := range list {
			if p.Empty() {
				plan.Reasons[m.ID] = append(plan.Reasons[m.ID], "no policy")
			}
			if i < p.KeepLast {
				plan.Reasons[m.ID] = append(plan.Reasons[m.ID], "last")
			}
			if p.KeepWithin > 0 && list[0].Time.Sub(m.Time) < p.KeepWithin {
				plan.Reasons[m.ID] = append(plan.Reasons[m.ID], "within "+p.KeepWithin.String())
			}
		}
		for _, ru := range rules {
			left, last := ru.n, ""
			for _, m := range list {
				if left <= 0 {
					break
				}
				if b := ru.bucket(m.Time.In(loc)); b != last {
					last = b
					left--
					plan.Reasons[m.ID] = append(plan.Reasons[m.ID], ru.name+" "+b)
				}
			}
		}
	}
	for _, m := range sorted {
		if len(plan.Reasons[m.ID]) > 0 {
			plan.Keep = append(plan.Keep, m)
		} else {
			plan.Forget = append(plan.Forget, m)
		}
	}
	for id, rs := range plan.Reasons {
		plan.Reasons[id] = slices.Compact(rs)
	}
	return plan
}

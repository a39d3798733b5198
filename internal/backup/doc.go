// Package backup takes crash-consistent backups of groups of volumes into a
// repository (internal/repo), incrementally from each volume's changed-block
// tracking, and restores them into a new file or a new volume. It also
// lists, verifies and prunes a repository's backups.
//
// It owns no volume: what it needs of the volumes (lock a group against
// other changes of their layers, snapshot it at one instant, read a
// snapshot, create and fill a volume, run jobs) it asks of its Host, which
// internal/engine implements. The engine serves instant restores (a volume
// whose base fills itself from a backup) itself, since that is a layer of
// a volume's stack; it uses PickVolume and RepoError from here.
//
// # A backup
//
// Backup checks the request, opens the repository and freezes the group
// (Host.Freeze: every volume locked against snapshot removal, promote,
// migration and mirror changes, in name order; a busy volume fails the
// request at once with errkind.ErrVolumeInUse). The job then goes:
//
//	snapshot      one group snapshot ("backup-JOBID") with all I/O held;
//	              under the hold each volume's bitmap "backup-REPO" starts
//	              a new generation (cbt.Rotate), so the old generation holds
//	              exactly the writes before the snapshot
//	read          each volume's snapshot is read into the repository: only
//	              the old generation's dirty ranges when the newest backup
//	              of the volume in this repository recorded that generation
//	              (metaCBTGeneration), else everything; holes the device
//	              reports (base:allocation) are skipped unread
//	commit        the manifest is written (repo.Backup.Commit)
//	drop          the snapshot is merged away (Group.Drop), also when a
//	              step failed; a crash leaves a "backup-" snapshot, which
//	              the engine merges away at its next start
//
// The group stays frozen until the job ends (Group.Unlock runs as the job
// finishes). A failed or cancelled backup writes no manifest; the chunks it
// uploaded are swept by the next prune.
//
// # A restore
//
// Restore writes one volume of a backup into a new sparse file (created
// exclusively, fdatasync'd and its directory synced before the job
// succeeds; removed on failure) or into a new volume (Host.FillNew: created
// marked unfinished, removed on failure, so a crash never leaves a partly
// restored volume that looks whole).
//
// # Locking
//
// The package holds no lock of its own. The order is the Host's: the
// group's volume locks (taken by Freeze) are held for the whole backup job,
// and the repository has its own lock (internal/repo).
package backup

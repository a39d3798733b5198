package api

// routeRoles is the role each route needs (docs/API.md has the same table).
// A route missing here needs RoleAdmin: a new route is closed until
// someone decides who may call it.
//
// The lines drawn:
//   - read: what `list`/`show` commands read, but no secret: not the
//     tokens, not a pairing code, not the NBD clients (those are admin).
//   - operator: running the volumes day to day, including jobs that name
//     host paths (import, export, restore to a file, file:// mirrors),
//     which are confined to --allow-path on TCP anyway.
//   - admin: who may reach the daemon and what it trusts: tokens, NBD
//     clients, node pairing, datastores and backup repositories (they
//     carry host paths, S3 keys and password files).
var routeRoles = map[string]Role{
	"GET /metrics": RoleMetrics, // reserved: Prometheus metrics (not served yet)

	"GET /v1/info": RoleRead,

	"GET /v1/volumes":                RoleRead,
	"POST /v1/volumes":               RoleOperator,
	"GET /v1/volumes/{name}":         RoleRead,
	"DELETE /v1/volumes/{name}":      RoleOperator,
	"PATCH /v1/volumes/{name}":       RoleOperator,
	"POST /v1/volumes/{name}/import": RoleOperator,
	"POST /v1/volumes/{name}/export": RoleOperator,
	"GET /v1/volumes/{name}/attach":  RoleRead,

	"POST /v1/snapshots":                              RoleOperator,
	"GET /v1/volumes/{name}/snapshots":                RoleRead,
	"POST /v1/volumes/{name}/snapshots/{snap}/revert": RoleOperator,
	"DELETE /v1/volumes/{name}/snapshots/{snap}":      RoleOperator,
	"POST /v1/volumes/{name}/clone":                   RoleOperator,
	"POST /v1/volumes/{name}/promote":                 RoleOperator,
	"POST /v1/volumes/{name}/migrate":                 RoleOperator,
	"POST /v1/volumes/{name}/cbt":                     RoleOperator,
	"GET /v1/volumes/{name}/cbt":                      RoleRead,
	"POST /v1/volumes/{name}/cbt/{bitmap}/clear":      RoleOperator,
	"DELETE /v1/volumes/{name}/cbt/{bitmap}":          RoleOperator,
	"GET /v1/jobs":                                    RoleRead,
	"GET /v1/jobs/{id}":                               RoleRead,
	"DELETE /v1/jobs/{id}":                            RoleOperator,
	"GET /v1/datastores":                              RoleRead,
	"POST /v1/datastores":                             RoleAdmin,
	"GET /v1/repos":                                   RoleRead,
	"POST /v1/repos":                                  RoleAdmin,
	"DELETE /v1/repos/{name}":                         RoleAdmin,
	"POST /v1/backups":                                RoleOperator,
	"GET /v1/backups":                                 RoleRead,
	"POST /v1/backups/verify":                         RoleOperator,
	"POST /v1/backups/prune":                          RoleOperator,
	"POST /v1/backups/serve":                          RoleOperator,
	"POST /v1/restores":                               RoleOperator,
	"GET /v1/mirrors":                                 RoleRead,
	"POST /v1/mirrors":                                RoleOperator,
	"POST /v1/mirrors/{name}/pause":                   RoleOperator,
	"POST /v1/mirrors/{name}/resume":                  RoleOperator,
	"DELETE /v1/mirrors/{name}":                       RoleOperator,
	"POST /v1/volumes/{name}/failover":                RoleOperator,
	"POST /v1/volumes/{name}/failback":                RoleOperator,
	"GET /v1/node":                                    RoleRead,
	"GET /v1/node/peers":                              RoleRead,
	"POST /v1/node/init":                              RoleAdmin,
	"POST /v1/node/code":                              RoleAdmin,
	"POST /v1/node/pair":                              RoleAdmin,
	"DELETE /v1/node/peers/{name}":                    RoleAdmin,
	"GET /v1/tokens":                                  RoleAdmin,
	"POST /v1/tokens":                                 RoleAdmin,
	"DELETE /v1/tokens/{name}":                        RoleAdmin,
	"/":                                               RoleMetrics, // no such route: 404 to any valid token
	"":                                                RoleMetrics, // wrong method on a route: 405 to any valid token
}

// routeRole returns the role a mux pattern needs: its entry, else admin.
func routeRole(pattern string) Role {
	if r, ok := routeRoles[pattern]; ok {
		return r
	}
	return RoleAdmin
}

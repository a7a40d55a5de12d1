// Package nodestate owns this monitoring node's state directory: one
// Record per host and service (the agent's last answer, and the restart
// held back, if any), the pauses, and the name of the breaker's files;
// with the trust rule for it and for the key file, and the hold rules'
// names and flags, so that both binaries judge the directory alike. handle_worker writes
// it (internal/handler), check_selfheal and `handle_worker status` read
// it (internal/healercheck); each file is named here once.
package nodestate

// BreakerFile names the node breaker's files in the state directory
// (breaker.json, breaker.lock); internal/breaker keeps them.
const BreakerFile = "breaker"

// ZoneFile names the zone rule's memory on this node (its trials and
// their window) in the state directory.
const ZoneFile = "zone"

// ZoneViewFile names the last read of the zone's failing services
// (zone-view.json, zone-view.lock), shared by the handler runs of this
// node for a moment.
const ZoneViewFile = "zone-view"

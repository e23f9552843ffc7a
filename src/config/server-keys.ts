// Server configuration keys (GET/PUT/PATCH /1.0), as LXD 5.0.2 accepts them.
import type { KeyTable } from "./keys.js";
import {
  ARCHITECTURES,
  isAny,
  isBool,
  isCompressionAlgorithm,
  isExpiry,
  isInt64,
  isIPv4,
  isListenAddress,
  oneOf,
} from "./validators.js";

const text = (doc: string) => ({ validate: isAny, doc });

/** config.Int64 (parsed first: "invalid integer"), then validate.IsInRange(0, 4294967294). */
const isAsn = (v: string) => {
  isInt64(v);
  if (Number(v) < 0 || Number(v) > 4294967294) throw new Error("Value isn't within valid range. Must be between 0 and 4294967294");
};

export const serverKeys: KeyTable = {
  "backups.compression_algorithm": { validate: isCompressionAlgorithm, default: "gzip", doc: "Compression algorithm for new backups" },
  "candid.api.key": text("Public key of the candid server"),
  "candid.api.url": text("URL of the external Candid authentication endpoint"),
  "candid.domains": text("Comma-separated list of allowed Candid domains"),
  "candid.expiry": { validate: isInt64, default: "3600", doc: "Candid macaroon expiry in seconds" },
  "cluster.https_address": { validate: isListenAddress, doc: "Address used for clustering traffic" },
  "cluster.images_minimal_replica": { validate: isInt64, default: "3", doc: "Minimal number of members with a copy of an image" },
  "cluster.join_token_expiry": { validate: isExpiry, default: "3H", doc: "Cluster join token lifetime" },
  "cluster.max_standby": { validate: isInt64, default: "2", doc: "Maximum number of standby database members" },
  "cluster.max_voters": { validate: isInt64, default: "3", doc: "Maximum number of voting database members" },
  "cluster.offline_threshold": { validate: isInt64, default: "20", doc: "Seconds after which an unresponsive member is offline" },
  "core.bgp_address": { validate: isListenAddress, doc: "Address to bind the BGP server to" },
  "core.bgp_asn": { validate: isAsn, doc: "BGP Autonomous System Number" },
  "core.bgp_routerid": { validate: isIPv4, doc: "BGP router identifier" },
  "core.debug_address": { validate: isListenAddress, doc: "Address to bind the pprof debug server to" },
  "core.dns_address": { validate: isListenAddress, doc: "Address to bind the authoritative DNS server to" },
  "core.https_address": { validate: isListenAddress, doc: "Address to bind the remote API to (HTTPS)" },
  "core.https_allowed_credentials": { validate: isBool, default: "false", doc: "Access-Control-Allow-Credentials header" },
  "core.https_allowed_headers": text("Access-Control-Allow-Headers header"),
  "core.https_allowed_methods": text("Access-Control-Allow-Methods header"),
  "core.https_allowed_origin": text("Access-Control-Allow-Origin header"),
  "core.https_trusted_proxy": text("Comma-separated list of trusted proxies (PROXY protocol)"),
  "core.metrics_address": { validate: isListenAddress, doc: "Address to bind the metrics server to" },
  "core.metrics_authentication": { validate: isBool, default: "true", doc: "Whether metrics require authentication" },
  "core.proxy_http": text("HTTP proxy to use"),
  "core.proxy_https": text("HTTPS proxy to use"),
  "core.proxy_ignore_hosts": text("Hosts that don't need the proxy"),
  "core.remote_token_expiry": { validate: isExpiry, doc: "Remote add token lifetime" },
  "core.shutdown_timeout": { validate: isInt64, default: "5", doc: "Minutes to wait for running operations on shutdown" },
  "core.trust_ca_certificates": { validate: isBool, default: "false", doc: "Trust all clients with a CA-signed certificate" },
  "core.trust_password": { validate: isAny, doc: "Password clients use to add themselves to the trust store", hidden: true },
  "images.auto_update_cached": { validate: isBool, default: "true", doc: "Auto-update cached images" },
  "images.auto_update_interval": { validate: isInt64, default: "6", doc: "Hours between image refreshes" },
  "images.compression_algorithm": { validate: isCompressionAlgorithm, default: "gzip", doc: "Compression algorithm for new images" },
  "images.default_architecture": { validate: oneOf(...ARCHITECTURES), doc: "Default architecture for multi-arch images" },
  "images.remote_cache_expiry": { validate: isInt64, default: "10", doc: "Days an unused cached remote image is kept" },
  "maas.api.key": text("API key to manage MAAS"),
  "maas.api.url": text("URL of the MAAS server"),
  "maas.machine": text("Name of this machine in MAAS"),
  "network.ovn.integration_bridge": { validate: isAny, default: "br-int", doc: "OVS integration bridge for OVN" },
  "network.ovn.northbound_connection": { validate: isAny, default: "unix:/var/run/ovn/ovnnb_db.sock", doc: "OVN northbound database" },
  "rbac.agent.private_key": text("Candid agent private key for RBAC"),
  "rbac.agent.public_key": text("Candid agent public key for RBAC"),
  "rbac.agent.url": text("Candid agent URL for RBAC"),
  "rbac.agent.username": text("Candid agent username for RBAC"),
  "rbac.api.expiry": { validate: isInt64, doc: "RBAC macaroon expiry in seconds" },
  "rbac.api.key": text("Public key of the RBAC server"),
  "rbac.api.url": text("URL of the RBAC server"),
  // Checked against the storage when set (src/storage/daemon-storage.ts), as LXD's doApi10Update.
  "storage.backups_volume": text("Volume to store backup tarballs on"),
  "storage.images_volume": text("Volume to store images on"),
};

// A version-aware store of API responses.
//
// Responses are kept in memory keyed by URL, each with the payload version it
// was served with (the ETag). A request for a URL already held sends
// If-None-Match with that version: a 304 is answered from memory. When the
// roster of a clan comes back with a new version, everything held for that clan
// under an older version is dropped. Only the latest version of each clan is
// remembered across reloads (sessionStorage); response bodies are never written
// to localStorage or sessionStorage. After a reload, memory is empty and the
// request is made with cache: "no-cache", so the browser revalidates its own
// HTTP cache with If-None-Match and the server answers 304 when nothing changed.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const VERSION_KEY = "clash.payload_version.";

function versionOf(response, data) {
  const etag = response.headers.get("ETag") || "";
  const fromHeader = etag.replace(/^W\//, "").replace(/"/g, "");
  return fromHeader || (data && data.payload_version) || null;
}

export class VersionedStore {
  constructor(fetchImpl = (...args) => window.fetch(...args)) {
    this.fetch = fetchImpl;
    this.entries = new Map(); // url -> {version, clan, data}
    this.versions = new Map(); // clan -> latest payload version seen
    this.listeners = new Set();
    this.stats = { requests: 0, notModified: 0, fetched: 0, dropped: 0 };
  }

  onVersionChange(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  knownVersion(clan) {
    return this.versions.get(clan) || sessionStorage.getItem(VERSION_KEY + clan);
  }

  async get(url, { clan = null, clanVersion = false } = {}) {
    const held = this.entries.get(url);
    const headers = { Accept: "application/json" };
    const init = { headers };
    if (held && held.version) {
      headers["If-None-Match"] = `"${held.version}"`;
      init.cache = "no-store"; // we revalidate ourselves
    } else {
      init.cache = "no-cache"; // let the browser revalidate its HTTP cache
    }
    this.stats.requests += 1;
    const response = await this.fetch(url, init);
    if (response.status === 304 && held) {
      this.stats.notModified += 1;
      return held.data;
    }
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      throw new ApiError(response.status, "bad_response", `unreadable answer from ${url}`);
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(response.status, error.code || "http_error", error.message || url);
    }
    this.stats.fetched += 1;
    const version = versionOf(response, data);
    if (clan && clanVersion && version) this.noteVersion(clan, version);
    if (version) this.entries.set(url, { version, clan, data });
    return data;
  }

  // A clan's roster came back with `version`: drop what older versions held.
  noteVersion(clan, version) {
    const previous = this.knownVersion(clan);
    this.versions.set(clan, version);
    sessionStorage.setItem(VERSION_KEY + clan, version);
    if (previous && previous !== version) {
      for (const [url, entry] of this.entries) {
        if (entry.clan === clan && entry.version !== version) {
          this.entries.delete(url);
          this.stats.dropped += 1;
        }
      }
      for (const listener of this.listeners) listener({ clan, previous, version });
    }
  }

  // The clan's roster is the version source: a new version drops older entries.
  roster(clan) {
    return this.get(`/api/v2/roster?clan=${encodeURIComponent(clan)}`, {
      clan,
      clanVersion: true,
    });
  }

  member(tag, clan) {
    const path = `/api/v2/members/${encodeURIComponent(tag.replace(/^#/, ""))}`;
    return this.get(`${path}?clan=${encodeURIComponent(clan)}`, { clan });
  }

  clans() {
    return this.get("/api/v2/clans");
  }

  // health is not versioned by snapshots (a failed run lands none): always fresh
  async health(clan) {
    const response = await this.fetch(
      `/api/v2/ingestion/health?clan=${encodeURIComponent(clan)}`,
      { cache: "no-store", headers: { Accept: "application/json" } },
    );
    const data = await response.json();
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(response.status, error.code || "http_error", error.message || "");
    }
    return data;
  }
}

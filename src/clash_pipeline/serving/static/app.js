// The dashboard: a roster table per clan, a page per member with charts, and
// the ingestion health widget. No build step, no dependencies: plain modules,
// DOM built with textContent (never innerHTML of data), charts in inline SVG.
import { VersionedStore } from "./store.js";

const store = new VersionedStore();
window.clashStore = store; // for the curious (and the browser test)
const view = document.getElementById("view");
const POLL_MS = Number(new URLSearchParams(location.search).get("poll") || 60) * 1000;

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const fmt = {
  int: (v) => (v === null || v === undefined ? "–" : Math.round(v).toLocaleString("en")),
  num: (v, d = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(d)),
  time: (v) => (v ? new Date(v).toISOString().replace("T", " ").slice(0, 16) + "Z" : "–"),
  ms: (v) => (v === null || v === undefined ? "–" : v >= 1000 ? `${(v / 1000).toFixed(1)} s` : `${v} ms`),
};

const tagPath = (tag) => tag.replace(/^#/, "");
const roleName = { leader: "Leader", coLeader: "Co-leader", admin: "Elder", member: "Member" };

// ------------------------------------------------------------------ routing

async function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [kind, tag, clan] = hash.split("/");
  try {
    if (kind === "clan" && tag) await showClan(`#${tag}`);
    else if (kind === "member" && tag) await showMember(`#${tag}`, clan ? `#${clan}` : null);
    else await showHome();
  } catch (err) {
    view.replaceChildren(h("p", { class: "error" }, `Error: ${err.message}`));
  }
}

let current = null; // what the refresh button re-renders

async function showHome() {
  const { clans } = await store.clans();
  renderClanNav(clans);
  if (clans.length === 1) {
    location.hash = `#/clan/${tagPath(clans[0].clan_tag)}`;
    return;
  }
  current = null;
  view.replaceChildren(
    h("div", { class: "card" }, h("h2", {}, "Clans"),
      clans.length
        ? h("ul", {}, clans.map((c) =>
            h("li", {}, h("a", { href: `#/clan/${tagPath(c.clan_tag)}` }, `${c.clan_name || c.clan_tag} (${c.clan_tag})`),
              ` · ${c.member_count} members · ${fmt.time(c.snapshot_at)}`)))
        : h("p", { class: "muted" }, "No clan yet: run clash-pipeline demo or clash-pipeline run.")),
  );
}

function renderClanNav(clans) {
  document.getElementById("clans").replaceChildren(
    ...clans.map((c) => h("a", { href: `#/clan/${tagPath(c.clan_tag)}` }, c.clan_name || c.clan_tag)),
  );
}

// ------------------------------------------------------------------ roster

// Since the 2025 split, trophies come in two scales that must not be compared:
// ranked trophies (this tournament's, within a tier) and battle-mode trophies
// (Unranked members' frozen count; everyone's before the split). The league
// column sorts like the API: tier (no tier = Unranked), then ranked trophies,
// then battle-mode trophies.
function leagueShown(m) {
  if (m.league_tier_name) return m.league_tier_name;
  const legacy = m.legacy_league_name || m.league_name;
  return legacy ? `${legacy} (legacy)` : null;
}
const byTier = (m) => [m.league_tier_rank ?? 0, m.ranked_trophies, m.battle_mode_trophies];

const COLUMNS = [
  { key: "name", label: "Name", text: true, get: (m) => m.name, link: true },
  { key: "role", label: "Role", text: true, get: (m) => roleName[m.role] || m.role },
  { key: "town_hall_level", label: "TH", get: (m) => m.town_hall_level },
  { key: "league", label: "League tier", text: true, firstDir: -1, get: leagueShown, sortBy: byTier,
    title: "Ranked league tier (legacy league before the 2025 split); sorts by tier, then ranked, then battle-mode trophies" },
  { key: "ranked_trophies", label: "Ranked trophies", get: (m) => m.ranked_trophies, show: fmt.int,
    title: "This tournament's trophies, within the member's tier" },
  { key: "battle_mode_trophies", label: "Battle-mode trophies", get: (m) => m.battle_mode_trophies, show: fmt.int,
    title: "Unranked members' frozen trophy count (everyone's trophies before the 2025 split)" },
  { key: "donations", label: "Donated", get: (m) => m.donations, show: fmt.int },
  { key: "donations_received", label: "Received", get: (m) => m.donations_received, show: fmt.int },
  { key: "balance", label: "Balance 30d", get: (m) => m.metrics.donation_balance_30d, show: fmt.int },
  { key: "hero_rush", label: "Hero rush", get: (m) => m.metrics.hero_rush_pct, show: (v) => fmt.num(v) },
  { key: "lab_rush", label: "Lab rush", get: (m) => m.metrics.lab_rush_pct, show: (v) => fmt.num(v) },
  { key: "ace", label: "ACE 30d", get: (m) => m.metrics.ace_30d, show: (v) => fmt.num(v) },
  { key: "tenure", label: "Tenure d", get: (m) => m.metrics.tenure_days, show: (v) => fmt.num(v, 0) },
  { key: "seen", label: "Seen d ago", get: (m) => m.metrics.days_since_last_seen, show: (v) => fmt.num(v, 1) },
];

const DEFAULT_SORT = { key: "league", dir: -1 };
let sortState = { ...DEFAULT_SORT };

// One value against another in the direction dir; missing values last either way.
function compareValues(x, y, dir) {
  if (x === y) return 0;
  if (x === null || x === undefined) return 1;
  if (y === null || y === undefined) return -1;
  return (x < y ? -1 : 1) * dir;
}

// A column's sort value may be a list (compared item by item). Ties keep the
// API's order (Array.prototype.sort is stable).
function sortedMembers(members) {
  const column = COLUMNS.find((c) => c.key === sortState.key) || COLUMNS.find((c) => c.key === DEFAULT_SORT.key);
  const value = column.sortBy || column.get;
  const keys = (m) => [value(m)].flat();
  return [...members].sort((a, b) => {
    const x = keys(a), y = keys(b);
    for (let i = 0; i < x.length; i += 1) {
      const order = compareValues(x[i], y[i], sortState.dir);
      if (order) return order;
    }
    return 0;
  });
}

function rosterTable(roster) {
  const clanPath = tagPath(roster.clan_tag);
  const head = h("tr", {}, COLUMNS.map((c) =>
    h("th", {
      class: c.text ? "text" : null,
      "data-key": c.key,
      "aria-sort": sortState.key === c.key ? (sortState.dir > 0 ? "ascending" : "descending") : null,
      title: c.title,
      onclick: () => {
        const first = c.firstDir ?? (c.text ? 1 : -1);
        sortState = { key: c.key, dir: sortState.key === c.key ? -sortState.dir : first };
        document.getElementById("roster").replaceWith(rosterTable(roster));
      },
    }, c.label)));
  const rows = sortedMembers(roster.members).map((m) =>
    h("tr", { "data-player": m.player_tag }, COLUMNS.map((c) => {
      const v = c.get(m);
      const shown = c.show ? c.show(v) : v ?? "–";
      return h("td", { class: c.text ? "text" : null },
        c.link ? h("a", { href: `#/member/${tagPath(m.player_tag)}/${clanPath}` }, shown) : shown);
    })));
  return h("table", { id: "roster" }, h("thead", {}, head), h("tbody", {}, rows));
}

async function showClan(clan) {
  current = () => showClan(clan);
  const [roster, clans] = await Promise.all([store.roster(clan), store.clans()]);
  renderClanNav(clans.clans);
  const snap = roster.snapshot;
  document.getElementById("version").textContent = `v ${roster.payload_version.slice(0, 8)}`;
  view.replaceChildren(
    h("div", { class: "grid" },
      h("section", { class: "card" },
        h("h2", {}, `${roster.clan_name || clan} `, h("span", { class: "muted" }, clan)),
        h("p", { class: "muted", id: "snapshot" },
          `${roster.members.length} members · snapshot ${fmt.time(snap.snapshot_at)} · `,
          h("span", { id: "snapshot-id" }, snap.snapshot_id),
          ` · schema ${snap.schema_version} · snapshot v${snap.snapshot_version}`),
        h("div", { class: "scroll" }, rosterTable(roster))),
      h("aside", { class: "card", id: "health" }, h("h2", {}, "Ingestion health"), h("p", { class: "muted" }, "Loading…"))),
  );
  await renderHealth(clan);
}

async function renderHealth(clan) {
  const box = document.getElementById("health");
  if (!box) return;
  let health;
  try {
    health = await store.health(clan);
  } catch (err) {
    box.replaceChildren(h("h2", {}, "Ingestion health"), h("p", { class: "error" }, err.message));
    return;
  }
  const last = health.last_run || {};
  const success = health.last_success || {};
  const status = last.status === "succeeded" ? "ok" : last.status === "failed" ? "bad" : "warn";
  const an = health.anomalies || {};
  box.replaceChildren(
    h("h2", {}, "Ingestion health ",
      h("span", { class: `badge ${health.stale ? "bad" : "ok"}`, id: "health-stale" }, health.stale ? "stale" : "fresh")),
    h("dl", { class: "kv" },
      h("dt", {}, "Last success"), h("dd", { id: "health-last-success" }, fmt.time(success.finished_at)),
      h("dt", {}, "Its duration"), h("dd", {}, fmt.ms(success.duration_ms)),
      h("dt", {}, "Hours since"), h("dd", {}, fmt.num(health.hours_since_last_success, 1)),
      h("dt", {}, "Last run"), h("dd", {}, h("span", { class: `badge ${status}`, id: "health-last-status" }, last.status || "–")),
      h("dt", {}, "Requests"), h("dd", {}, `${fmt.int(last.requests)} (${fmt.int(an.failed_requests)} failed, ${fmt.int(an.retries)} retries, ${fmt.int(an.throttled)} throttled)`),
      h("dt", {}, "Members"), h("dd", {}, `${fmt.int(an.members_fetched)} fetched, ${fmt.int(an.members_in_snapshot)} in snapshot`)),
    h("h3", {}, "Phases"),
    h("table", { id: "health-phases" },
      h("thead", {}, h("tr", {}, h("th", { class: "text" }, "Phase"), h("th", {}, "Status"), h("th", {}, "Time"), h("th", {}, "Rows"))),
      h("tbody", {}, (health.phases || []).map((p) =>
        h("tr", {}, h("td", { class: "text" }, p.step ? `· ${p.step}` : p.phase), h("td", {}, p.status),
          h("td", {}, fmt.ms(p.duration_ms)), h("td", {}, p.rows_written ?? p.rows_changed ?? "–"))))),
    h("h3", {}, `Open alerts (${health.open_alerts.length})`),
    health.open_alerts.length
      ? h("ul", { class: "alerts", id: "health-alerts" }, health.open_alerts.map((a) =>
          h("li", {}, h("span", { class: `badge ${a.severity === "critical" ? "bad" : "warn"}` }, a.severity), ` ${a.check_name}: ${a.summary}`)))
      : h("p", { class: "muted", id: "health-alerts" }, "None."),
  );
}

// ------------------------------------------------------------------ member

function lineChart(title, points, { digits = 0 } = {}) {
  const W = 420, H = 180, L = 44, R = 8, T = 20, B = 22;
  const svg = (tag, attrs = {}, ...kids) => {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    for (const kid of kids) node.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    return node;
  };
  const data = points.filter((p) => p.y !== null && p.y !== undefined).map((p) => ({ x: new Date(p.x).getTime(), y: Number(p.y) }));
  const root = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  root.append(svg("text", { x: L, y: 12 }, title));
  if (!data.length) {
    root.append(svg("text", { x: W / 2, y: H / 2 }, "no data"));
    return root;
  }
  const xs = data.map((p) => p.x), ys = data.map((p) => p.y);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) { x0 -= 3600e3; x1 += 3600e3; }
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  root.append(
    svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }),
    svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }),
    svg("text", { x: 2, y: sy(y1) + 4 }, y1.toFixed(digits)),
    svg("text", { x: 2, y: sy(y0) + 4 }, y0.toFixed(digits)),
    svg("text", { x: L, y: H - 6 }, fmt.time(x0).slice(0, 10)),
    svg("text", { x: W - R - 60, y: H - 6 }, fmt.time(x1).slice(0, 10)),
    svg("polyline", { class: "line", points: data.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(" ") }),
  );
  if (data.length <= 60) for (const p of data) root.append(svg("circle", { class: "dot", cx: sx(p.x), cy: sy(p.y), r: 2 }));
  return root;
}

async function showMember(tag, clan) {
  current = () => showMember(tag, clan);
  const data = await store.member(tag, clan || "");
  const m = data.member || {};
  const history = data.history || [];
  const series = (name, window) => ((data.metrics[name] || {})[window] || []).map((p) => ({ x: p.as_of, y: p.value }));
  const stat = (key) => history.map((row) => ({ x: row.snapshot_at, y: row[key] }));
  view.replaceChildren(
    h("section", { class: "card" },
      h("p", {}, h("a", { href: `#/clan/${tagPath(data.clan_tag)}` }, `← ${data.clan_tag}`)),
      h("h2", { id: "member-name" }, `${m.name || tag} `, h("span", { class: "muted" }, tag)),
      h("p", { class: "muted" },
        `${roleName[m.role] || m.role || ""} · TH ${m.town_hall_level ?? "–"} · ${leagueShown(m) || "no league"} · `,
        `${history.length} snapshots · ${m.is_current ? "in the clan" : "left"}`),
      h("div", { class: "charts", id: "member-charts" },
        lineChart("Ranked trophies", stat("ranked_trophies")),
        lineChart("Battle-mode trophies", stat("battle_mode_trophies")),
        lineChart("Donations (season counter)", stat("donations")),
        lineChart("Donation balance 30d", series("donation_balance", "30d")),
        lineChart("Hero rush %", series("hero_rush_pct", "latest"), { digits: 1 }),
        lineChart("Lab rush %", series("lab_rush_pct", "latest"), { digits: 1 }),
        lineChart("ACE 30d", series("ace", "30d"), { digits: 1 }),
        lineChart("Active days 30d", series("active_days", "30d")),
        lineChart("War stars", stat("war_stars")))),
  );
}

// ------------------------------------------------------------------ refresh

store.onVersionChange(({ clan, version }) => {
  document.getElementById("version").textContent = `v ${version.slice(0, 8)} (new)`;
});

async function refresh() {
  if (current) {
    try {
      await current();
    } catch (err) {
      view.replaceChildren(h("p", { class: "error" }, `Error: ${err.message}`));
    }
  } else await route();
}

document.getElementById("refresh").addEventListener("click", refresh);
window.addEventListener("hashchange", route);
if (POLL_MS > 0) setInterval(refresh, POLL_MS);
route();

/*
 * breaker's live dashboard: one card per circuit, fed by Hystrix event streams (server-sent events).
 *
 * Reads the standard Hystrix stream (Java Hystrix, Turbine's aggregates) and breaker's extras (circuitState,
 * currentAbandonedCount, rollingCountCancelled, rollingCountSlow, propertyValue_slowCallDurationInMilliseconds,
 * propertyValue_slowCallPercentThreshold). No framework, no build step, no network access but the streams.
 *
 * Configuration, strongest first:
 *   - the page URL's query: ?stream=URL (repeatable, one source each), ?filter=TEXT, ?sort=KEY,
 *     ?stale=SECONDS (a card with no message for that long is marked stale);
 *   - <meta name="breaker-config" content='{"streams": [...], "proxy": "proxy.stream" | null, "stale": 5}'>,
 *     which the server fills in (served raw, the content is not JSON and the defaults apply);
 *   - the defaults: streams ["hystrix.stream"], no proxy, stale after 5 s.
 */
"use strict";

const DEFAULT_CONFIG = Object.freeze({ streams: Object.freeze(["hystrix.stream"]), proxy: null, stale: 5 });
const INT_MAX = 2147483647; // Java's Integer.MAX_VALUE: Hystrix's "no limit"
const HISTORY_MS = 5 * 60 * 1000; // the sparkline's span
const SORT_THROTTLE_MS = 500;
const STALE_CHECK_MS = 1000;
const RETRY_MS = 5000; // reopen a stream the browser gave up on (an HTTP error) after this long
const SPARK_HEIGHT = 30; // the sparkline's viewBox is 100 x 30
const SPARK_MARGIN = 1.5;

const STATE_LABELS = new Map([
  ["closed", "closed"],
  ["open", "open"],
  ["half_open", "half-open"],
  ["forced_open", "forced open"],
  ["forced_closed", "forced closed"],
]);
const STATE_ORDER = ["open", "half_open", "forced_open", "forced_closed", "closed"];
const OPEN_STATES = new Set(["open", "half_open", "forced_open"]);
const SORTS = ["state", "name", "error", "rate", "latency"];
const DEFAULT_SORT = "state";
const PERCENTILES = ["50", "90", "99", "99.5", "100"];

// Each count shown on a card, and the message fields it adds up.
const COUNT_FIELDS = new Map([
  ["success", ["rollingCountSuccess"]],
  ["failure", ["rollingCountFailure"]],
  ["timeout", ["rollingCountTimeout"]],
  ["short-circuited", ["rollingCountShortCircuited"]],
  ["rejected", ["rollingCountSemaphoreRejected", "rollingCountThreadPoolRejected"]],
  ["bad-request", ["rollingCountBadRequests"]],
  ["fallback-success", ["rollingCountFallbackSuccess"]],
  ["fallback-failure", ["rollingCountFallbackFailure"]],
  ["fallback-missing", ["rollingCountFallbackMissing"]],
  ["cancelled", ["rollingCountCancelled"]],
  ["slow", ["rollingCountSlow"]],
]);
// Counts whose row is shown only when the stream sends the field (older Java Hystrix lacks the first).
const OPTIONAL_COUNTS = new Set(["fallback-missing", "cancelled", "slow"]);

const collator = new Intl.Collator("en", { numeric: true, sensitivity: "base" });
const integerFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const rateFormat = new Intl.NumberFormat("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });

const dashboard = {
  config: null,
  streams: [],
  staleMs: DEFAULT_CONFIG.stale * 1000,
  sources: new Map(), // stream URL -> {url, status, events, retryTimer}
  cards: new Map(), // cardKey(source, name) -> card
  pools: new Map(), // cardKey(source, pool name) -> the pool's latest figures
  filter: "",
  sort: DEFAULT_SORT,
  dropped: 0,
  sortTimer: null,
  lastSort: 0,
};

// -- small helpers ------------------------------------------------------------------------------------------------

function byId(id) {
  return document.getElementById(id);
}

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

function setData(element, key, value) {
  if (element.dataset[key] !== value) element.dataset[key] = value;
}

function positiveNumber(value) {
  if (value === null || value === undefined || value === "" || typeof value === "boolean") return null;
  const number = Number(value);
  return Number.isFinite(number) && number > 0 ? number : null;
}

function cardKey(source, name) {
  return `${source}\n${name}`;
}

// -- reading a message's values: plain, or Turbine's aggregates ---------------------------------------------------
// Turbine sums numbers over hosts (reportingHosts is the host count) and turns a value the hosts disagree on into a
// map of value -> host count, e.g. {"true": 1, "false": 2} or {"50": 2, "40": 1}.

function mostCommonKey(map) {
  let best = null;
  let bestCount = -Infinity;
  for (const [key, count] of Object.entries(map)) {
    if (Number(count) > bestCount) {
      best = key;
      bestCount = Number(count);
    }
  }
  return best;
}

/** A number: as sent, the most common value of a map, or 0 when missing or not a number. */
function numberOf(value) {
  if (isObject(value)) return numberOf(mostCommonKey(value));
  const number = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  return typeof number === "number" && Number.isFinite(number) ? number : 0;
}

/** A per-host setting: a map's most common value, or a number divided by the hosts (Turbine sums it); or null. */
function perHostOf(value, hosts) {
  if (isObject(value)) return numberOf(mostCommonKey(value));
  if (typeof value !== "number" || !Number.isFinite(value)) return null;
  return value / hosts;
}

/** A limit over all hosts: a number as sent, a map's values times their host counts; INT_MAX and up is Infinity. */
function limitOf(value) {
  let total = null;
  if (isObject(value)) {
    total = Object.entries(value).reduce((sum, [key, count]) => sum + numberOf(key) * numberOf(count), 0);
    if (Object.keys(value).some((key) => numberOf(key) >= INT_MAX)) total = Infinity;
  } else if (typeof value === "number" && Number.isFinite(value)) {
    total = value;
  }
  return total !== null && total >= INT_MAX ? Infinity : total;
}

/** A boolean: true, "true", or a map in which any host says "true". */
function truthOf(value) {
  if (isObject(value)) return numberOf(value.true) > 0;
  return value === true || value === "true";
}

/** A string: as sent, or a map's most common value; "" when missing. */
function textOf(value) {
  if (isObject(value)) return mostCommonKey(value) ?? "";
  return typeof value === "string" ? value : "";
}

// -- what a HystrixCommand message says ---------------------------------------------------------------------------

function stateOf(message) {
  const exact = message.circuitState;
  if (typeof exact === "string" && STATE_LABELS.has(exact)) return exact;
  if (isObject(exact)) {
    const reported = STATE_ORDER.find((state) => numberOf(exact[state]) > 0);
    if (reported) return reported;
  }
  if (truthOf(message.propertyValue_circuitBreakerForceOpen)) return "forced_open";
  if (truthOf(message.propertyValue_circuitBreakerForceClosed)) return "forced_closed";
  if (truthOf(message.isCircuitBreakerOpen)) return "open"; // a plain Hystrix stream cannot tell half-open apart
  return "closed";
}

function readCounts(message) {
  const counts = new Map();
  for (const [key, fields] of COUNT_FIELDS) {
    const sent = fields.some((field) => field in message);
    const value = fields.reduce((sum, field) => sum + numberOf(message[field]), 0);
    counts.set(key, { value, sent });
  }
  return counts;
}

function readLatency(message, prefix, hosts) {
  const percentiles = isObject(message[prefix]) ? message[prefix] : {};
  const latency = new Map();
  const mean = message[`${prefix}_mean`];
  latency.set("mean", typeof mean === "number" ? mean / hosts : null);
  for (const percentile of PERCENTILES) {
    latency.set(percentile, percentile in percentiles ? numberOf(percentiles[percentile]) : null);
  }
  return latency;
}

/** Everything a card shows, from one HystrixCommand message (derived as the Netflix dashboard does). */
function readCommand(message) {
  const hosts = Math.max(1, numberOf(message.reportingHosts));
  const windowMs = perHostOf(message.propertyValue_metricsRollingStatisticalWindowInMilliseconds, hosts);
  const requests = Math.max(0, numberOf(message.requestCount));
  const isolation = textOf(message.propertyValue_executionIsolationStrategy).toLowerCase();
  return {
    name: String(message.name),
    group: textOf(message.group),
    threadPool: textOf(message.threadPool),
    isolation,
    hosts,
    state: stateOf(message),
    rate: windowMs > 0 ? requests / (windowMs / 1000) : 0,
    errorPct: numberOf(message.errorPercentage) / hosts,
    threshold: perHostOf(message.propertyValue_circuitBreakerErrorThresholdPercentage, hosts),
    slowMs: perHostOf(message.propertyValue_slowCallDurationInMilliseconds, hosts),
    slowThreshold: perHostOf(message.propertyValue_slowCallPercentThreshold, hosts),
    counts: readCounts(message),
    execute: readLatency(message, "latencyExecute", hosts),
    total: readLatency(message, "latencyTotal", hosts),
    inUse: numberOf(message.currentConcurrentExecutionCount),
    tickets: limitOf(message.propertyValue_executionIsolationSemaphoreMaxConcurrentRequests),
    abandoned: "currentAbandonedCount" in message ? numberOf(message.currentAbandonedCount) : null,
    fleet: readFleet(message),
  };
}

// breaker's fleet mode (configure_fleet) sends the fleet's shared figures beside the process's own; while the
// fleet is open, also the figures that tripped it (the trip clears the fleet's window).
function readFleet(message) {
  if (!("fleetState" in message)) return null;
  return {
    state: textOf(message.fleetState),
    requests: numberOf(message.fleetRequestCount),
    errorPct: numberOf(message.fleetErrorPercentage),
    generation: numberOf(message.fleetGeneration),
    connected: truthOf(message.fleetConnected),
    probing: truthOf(message.fleetProbing),
    trip:
      "fleetTripRequestCount" in message
        ? { requests: numberOf(message.fleetTripRequestCount), errorPct: numberOf(message.fleetTripErrorPercentage) }
        : null,
  };
}

function readPool(message) {
  return {
    name: String(message.name),
    active: numberOf(message.currentActiveCount),
    size: limitOf(message.currentMaximumPoolSize),
    queued: numberOf(message.currentQueueSize),
    executed: numberOf(message.rollingCountThreadsExecuted),
    rejected: numberOf(message.rollingCountCommandRejections),
  };
}

// -- formatting ---------------------------------------------------------------------------------------------------

function formatCount(value) {
  return value === null ? "—" : integerFormat.format(value);
}

function formatLimit(value) {
  return value === Infinity ? "∞" : formatCount(value);
}

function formatRate(value) {
  return `${rateFormat.format(value)}/s`;
}

function formatPercent(value) {
  const rounded = Math.round(value * 10) / 10;
  return `${Number.isInteger(rounded) ? rounded : rounded.toFixed(1)}%`;
}

// -- configuration and the address bar ----------------------------------------------------------------------------

function readConfig() {
  const meta = document.querySelector('meta[name="breaker-config"]');
  let parsed = null;
  try {
    parsed = JSON.parse(meta ? meta.content : "");
  } catch (error) {
    parsed = null; // served raw (the placeholder is still there): the defaults apply
  }
  const config = isObject(parsed) ? parsed : {};
  const streams = Array.isArray(config.streams)
    ? config.streams.filter((stream) => typeof stream === "string" && stream.trim() !== "")
    : [];
  return {
    streams: streams.length > 0 ? streams : [...DEFAULT_CONFIG.streams],
    proxy: typeof config.proxy === "string" && config.proxy !== "" ? config.proxy : DEFAULT_CONFIG.proxy,
    stale: positiveNumber(config.stale) ?? DEFAULT_CONFIG.stale,
  };
}

function readQuery() {
  const params = new URLSearchParams(window.location.search);
  return {
    streams: params.getAll("stream").map((stream) => stream.trim()).filter((stream) => stream !== ""),
    filter: params.get("filter") ?? "",
    sort: params.get("sort"),
    stale: positiveNumber(params.get("stale")),
  };
}

function updateQuery(change) {
  const url = new URL(window.location.href);
  change(url.searchParams);
  window.history.replaceState(window.history.state, "", url);
}

// -- streams ------------------------------------------------------------------------------------------------------

/** The URL to open for a stream: same-origin ones directly, other origins through the proxy when there is one. */
function eventSourceUrl(streamUrl) {
  let resolved;
  try {
    resolved = new URL(streamUrl, document.baseURI);
  } catch (error) {
    return streamUrl;
  }
  const proxy = dashboard.config.proxy;
  if (resolved.origin === window.location.origin || proxy === null) return streamUrl;
  const separator = proxy.includes("?") ? "&" : "?";
  return `${proxy}${separator}origin=${encodeURIComponent(streamUrl)}`;
}

function connect(url) {
  const source = { url, status: "connecting", events: null, retryTimer: null };
  dashboard.sources.set(url, source);
  openSource(source);
}

function openSource(source) {
  source.retryTimer = null;
  try {
    source.events = new EventSource(eventSourceUrl(source.url));
  } catch (error) {
    source.events = null; // not a URL at all: nothing to retry
    setSourceStatus(source, "error");
    return;
  }
  source.events.addEventListener("message", (event) => handleMessage(source, event));
  source.events.addEventListener("error", () => handleSourceError(source));
}

function handleSourceError(source) {
  setSourceStatus(source, "error");
  // On a network error the browser reconnects by itself; on an HTTP error it gives up (CLOSED): try again later.
  if (source.events.readyState === EventSource.CLOSED && source.retryTimer === null) {
    source.retryTimer = window.setTimeout(() => openSource(source), RETRY_MS);
  }
}

function disconnectAll() {
  for (const source of dashboard.sources.values()) {
    window.clearTimeout(source.retryTimer);
    if (source.events !== null) source.events.close();
  }
  dashboard.sources.clear();
}

function setSourceStatus(source, status) {
  if (source.status === status) return;
  source.status = status;
  renderStatus();
}

function renderStatus() {
  const sources = [...dashboard.sources.values()];
  const failing = sources.filter((source) => source.status === "error").length;
  let status = "connecting";
  let text = "connecting…";
  if (sources.some((source) => source.status === "live")) {
    status = "live";
    text = failing > 0 ? `live (${failing} of ${sources.length} streams failing)` : "live";
  } else if (failing > 0) {
    status = "error";
    text = "error: no stream answers, retrying";
  }
  const element = byId("status");
  setData(element, "status", status);
  setText(element, text);
  element.title = sources.map((source) => `${source.url}: ${source.status}`).join("\n");
}

function handleMessage(source, event) {
  setSourceStatus(source, "live");
  let message;
  try {
    message = JSON.parse(event.data);
  } catch (error) {
    message = null;
  }
  if (!isObject(message)) {
    countDropped();
    return;
  }
  if (typeof message.name !== "string" || message.name === "") return;
  if (message.type === "HystrixCommand") updateCommand(source.url, message);
  else if (message.type === "HystrixThreadPool") updatePool(source.url, message);
}

function countDropped() {
  dashboard.dropped += 1;
  const element = byId("dropped");
  element.hidden = false;
  const plural = dashboard.dropped === 1 ? "" : "s";
  setText(element, `${dashboard.dropped} malformed message${plural} ignored`);
}

// -- cards --------------------------------------------------------------------------------------------------------

function createCard(source, name) {
  const element = byId("card-template").content.firstElementChild.cloneNode(true);
  element.dataset.name = name;
  element.dataset.source = source;
  const find = (selector) => element.querySelector(selector);
  const card = {
    key: cardKey(source, name),
    source,
    name,
    element,
    figures: null,
    poolName: name,
    samples: [],
    lastSeen: 0,
    parts: {
      state: find(".state"),
      group: find(".group"),
      poolName: find(".pool-name"),
      hosts: find(".hosts"),
      source: find(".source"),
      rate: find(".rate"),
      tickets: find(".tickets"),
      abandoned: find(".abandoned"),
      fleet: find(".fleet"),
      errors: find(".errors"),
      errorPct: find(".error-pct"),
      errorFill: find(".error-fill"),
      errorThreshold: find(".error-threshold"),
      slowRule: find(".slow-rule"),
      sparkRate: find(".spark-rate"),
      sparkError: find(".spark-error"),
      pool: find(".pool"),
      counts: new Map([...element.querySelectorAll("[data-count]")].map((el) => [el.dataset.count, el])),
      latency: new Map([...element.querySelectorAll("[data-latency]")].map((el) => [el.dataset.latency, el])),
    },
  };
  find(".name").textContent = name;
  find(".stale-note").textContent = `no data for ${dashboard.staleMs / 1000} s`;
  setText(card.parts.source, source);
  card.parts.source.hidden = dashboard.streams.length < 2;
  dashboard.cards.set(card.key, card);
  applyFilter(card);
  byId("cards").append(element);
  return card;
}

function updateCommand(source, message) {
  const key = cardKey(source, message.name);
  const card = dashboard.cards.get(key) ?? createCard(source, message.name);
  const previous = card.figures;
  const figures = readCommand(message);
  const now = Date.now();
  card.figures = figures;
  card.lastSeen = now;
  addSample(card, figures, now);
  renderCard(card, figures);
  if (previous === null || sortKeyChanged(previous, figures)) scheduleSort();
  renderSummary();
}

function updatePool(source, message) {
  const pool = readPool(message);
  dashboard.pools.set(cardKey(source, pool.name), pool);
  for (const card of dashboard.cards.values()) {
    if (card.source === source && card.poolName === pool.name) renderPool(card, pool);
  }
}

function renderCard(card, figures) {
  const { parts } = card;
  setData(card.element, "state", figures.state);
  setData(card.element, "stale", "false");
  setText(parts.state, STATE_LABELS.get(figures.state));
  setText(parts.rate, formatRate(figures.rate));
  setText(parts.tickets, `${formatCount(figures.inUse)} / ${formatLimit(figures.tickets)}`);
  setText(parts.abandoned, figures.abandoned === null ? "—" : formatCount(figures.abandoned));
  renderMeta(card, figures);
  renderFleet(parts.fleet, figures.fleet);
  renderErrors(parts, figures);
  renderSlowRule(parts.slowRule, figures);
  renderCounts(parts, figures.counts);
  renderLatency(parts, "execute", figures.execute);
  renderLatency(parts, "total", figures.total);
  renderSparkline(card);
  const pool = dashboard.pools.get(cardKey(card.source, card.poolName));
  if (pool) renderPool(card, pool);
}

function renderFleet(element, fleet) {
  element.hidden = fleet === null;
  if (fleet === null) return;
  const link = fleet.connected ? (fleet.probing ? "probing for the fleet" : "synced") : "Redis unreachable: local";
  const shown = fleet.state === "open" && fleet.trip !== null ? fleet.trip : fleet; // open: what tripped it
  setText(
    element,
    `fleet: ${fleet.state} · ${shown === fleet ? "" : "tripped at "}${formatCount(shown.requests)} req · ` +
      `${formatPercent(shown.errorPct)} errors · gen ${formatCount(fleet.generation)} · ${link}`,
  );
  setData(element, "state", fleet.state);
  setData(element, "connected", String(fleet.connected));
}

function renderMeta(card, figures) {
  const { parts } = card;
  card.poolName = figures.threadPool || figures.name;
  setText(parts.group, `group ${figures.group || figures.name}`);
  const isolation = figures.isolation ? ` (${figures.isolation})` : "";
  setText(parts.poolName, `pool ${card.poolName}${isolation}`);
  parts.hosts.hidden = figures.hosts < 2;
  setText(parts.hosts, `${formatCount(figures.hosts)} hosts`);
}

function renderErrors(parts, figures) {
  const { errorPct, threshold } = figures;
  const thresholdText = threshold === null ? "" : ` / ${formatPercent(threshold)}`;
  setText(parts.errorPct, `${formatPercent(errorPct)}${thresholdText}`);
  parts.errorFill.style.width = `${Math.min(100, Math.max(0, errorPct))}%`;
  parts.errorThreshold.hidden = threshold === null;
  if (threshold !== null) parts.errorThreshold.style.left = `${Math.min(100, Math.max(0, threshold))}%`;
  setData(parts.errors, "over", String(threshold !== null && errorPct >= threshold && errorPct > 0));
}

/** The slow-call rule, when the command has one (a slow-call duration that is not INT_MAX, "no call is slow"). */
function renderSlowRule(element, figures) {
  const { slowMs, slowThreshold } = figures;
  element.hidden = slowMs === null || slowMs >= INT_MAX;
  if (element.hidden) return;
  const trips = slowThreshold === null ? "" : ` · trips at ${formatPercent(slowThreshold)}`;
  setText(element, `slow: run ≥ ${formatCount(slowMs)} ms${trips}`);
}

function renderCounts(parts, counts) {
  for (const [key, { value, sent }] of counts) {
    const element = parts.counts.get(key);
    setText(element, formatCount(value));
    if (OPTIONAL_COUNTS.has(key)) element.parentElement.hidden = !sent;
  }
}

function renderLatency(parts, prefix, latency) {
  for (const [percentile, value] of latency) {
    setText(parts.latency.get(`${prefix}-${percentile}`), formatCount(value));
  }
}

function renderPool(card, pool) {
  const { parts } = card;
  parts.pool.hidden = false;
  setText(
    parts.pool,
    `pool ${pool.name}: ${formatCount(pool.active)} active of ${formatLimit(pool.size)}, ` +
      `${formatCount(pool.queued)} queued, ${formatCount(pool.executed)} run, ${formatCount(pool.rejected)} rejected`,
  );
}

// -- sparkline ----------------------------------------------------------------------------------------------------

function addSample(card, figures, now) {
  card.samples.push({ time: now, rate: figures.rate, error: figures.errorPct });
  const oldest = now - HISTORY_MS;
  let expired = 0;
  while (expired < card.samples.length && card.samples[expired].time < oldest) expired += 1;
  if (expired > 0) card.samples.splice(0, expired);
}

function sparkY(fraction) {
  const clamped = Math.min(1, Math.max(0, fraction));
  return (SPARK_HEIGHT - SPARK_MARGIN - clamped * (SPARK_HEIGHT - 2 * SPARK_MARGIN)).toFixed(2);
}

/** A polyline's points: time across (the samples' span, at most the last 5 minutes), valueOf's y down. */
function sparkPoints(samples, valueOf) {
  if (samples.length === 0) return "";
  const start = samples[0].time;
  const span = samples[samples.length - 1].time - start;
  if (span <= 0) return `0,${valueOf(samples[0])} 100,${valueOf(samples[0])}`; // one sample: a level line
  return samples.map((sample) => `${(((sample.time - start) / span) * 100).toFixed(2)},${valueOf(sample)}`).join(" ");
}

function renderSparkline(card) {
  const maxRate = card.samples.reduce((max, sample) => Math.max(max, sample.rate), 0);
  const rateY = (sample) => sparkY(maxRate > 0 ? sample.rate / maxRate : 0);
  const errorY = (sample) => sparkY(sample.error / 100);
  card.parts.sparkRate.setAttribute("points", sparkPoints(card.samples, rateY));
  card.parts.sparkError.setAttribute("points", sparkPoints(card.samples, errorY));
}

// -- staleness ----------------------------------------------------------------------------------------------------

function checkStale() {
  const now = Date.now();
  for (const card of dashboard.cards.values()) {
    setData(card.element, "stale", String(now - card.lastSeen > dashboard.staleMs));
  }
}

// -- filter, sort, summary ----------------------------------------------------------------------------------------

function matchesFilter(name) {
  return dashboard.filter === "" || name.toLowerCase().includes(dashboard.filter);
}

function applyFilter(card) {
  const hidden = !matchesFilter(card.name);
  if (card.element.hidden !== hidden) card.element.hidden = hidden;
}

function applyFilterToAll() {
  for (const card of dashboard.cards.values()) applyFilter(card);
  renderEmpty();
}

function byName(a, b) {
  return collator.compare(a.name, b.name) || collator.compare(a.source, b.source);
}

function stateRank(card) {
  return STATE_ORDER.indexOf(card.figures.state);
}

function latencyRank(card) {
  return card.figures.execute.get("99") ?? -1;
}

const COMPARATORS = {
  name: byName,
  state: (a, b) => stateRank(a) - stateRank(b) || byName(a, b),
  error: (a, b) => b.figures.errorPct - a.figures.errorPct || byName(a, b),
  rate: (a, b) => b.figures.rate - a.figures.rate || byName(a, b),
  latency: (a, b) => latencyRank(b) - latencyRank(a) || byName(a, b),
};

function sortKeyChanged(previous, figures) {
  return (
    previous.state !== figures.state ||
    previous.errorPct !== figures.errorPct ||
    previous.rate !== figures.rate ||
    previous.execute.get("99") !== figures.execute.get("99")
  );
}

/** Sort soon: at most once per SORT_THROTTLE_MS. */
function scheduleSort() {
  if (dashboard.sortTimer !== null) return;
  const wait = Math.max(0, dashboard.lastSort + SORT_THROTTLE_MS - Date.now());
  dashboard.sortTimer = window.setTimeout(sortCards, wait);
}

function sortCards() {
  window.clearTimeout(dashboard.sortTimer);
  dashboard.sortTimer = null;
  dashboard.lastSort = Date.now();
  const container = byId("cards");
  const sorted = [...dashboard.cards.values()].sort(COMPARATORS[dashboard.sort]);
  const inOrder = sorted.every((card, index) => container.children[index] === card.element);
  if (!inOrder) container.append(...sorted.map((card) => card.element));
}

function renderSummary() {
  const cards = [...dashboard.cards.values()];
  const open = cards.filter((card) => OPEN_STATES.has(card.figures.state)).length;
  const plural = cards.length === 1 ? "" : "s";
  setText(byId("summary"), cards.length === 0 ? "" : `${cards.length} circuit${plural} · ${open} open`);
  renderEmpty();
}

function renderEmpty() {
  const element = byId("empty");
  const cards = [...dashboard.cards.values()];
  if (cards.length === 0) {
    element.hidden = false;
    setText(element, `Waiting for data from ${dashboard.streams.join(", ")}…`);
  } else if (cards.every((card) => card.element.hidden)) {
    element.hidden = false;
    setText(element, `No circuit name contains “${dashboard.filter}”.`);
  } else {
    element.hidden = true;
  }
}

// -- controls -----------------------------------------------------------------------------------------------------

function handleFilterInput(event) {
  const text = event.target.value.trim();
  dashboard.filter = text.toLowerCase();
  updateQuery((params) => (text === "" ? params.delete("filter") : params.set("filter", text)));
  applyFilterToAll();
}

function handleSortChange(event) {
  dashboard.sort = SORTS.includes(event.target.value) ? event.target.value : DEFAULT_SORT;
  updateQuery((params) => (dashboard.sort === DEFAULT_SORT ? params.delete("sort") : params.set("sort", dashboard.sort)));
  sortCards();
}

function handleWatchSubmit(event) {
  event.preventDefault();
  const url = byId("stream-url").value.trim();
  if (url === "") return;
  updateQuery((params) => {
    params.delete("stream");
    params.set("stream", url);
  });
  watch([url]);
}

/** Replace the watched streams: forget every card and connect to each of them. */
function watch(streams) {
  disconnectAll();
  window.clearTimeout(dashboard.sortTimer);
  dashboard.sortTimer = null;
  dashboard.cards.clear();
  dashboard.pools.clear();
  dashboard.dropped = 0;
  byId("dropped").hidden = true;
  dashboard.streams = [...new Set(streams)];
  byId("cards").replaceChildren();
  byId("stream-url").value = dashboard.streams.length === 1 ? dashboard.streams[0] : "";
  for (const url of dashboard.streams) connect(url);
  renderStatus();
  renderSummary();
}

function init() {
  const query = readQuery();
  dashboard.config = readConfig();
  dashboard.staleMs = 1000 * (query.stale ?? dashboard.config.stale);
  dashboard.sort = SORTS.includes(query.sort) ? query.sort : DEFAULT_SORT;
  dashboard.filter = query.filter.trim().toLowerCase();
  byId("sort").value = dashboard.sort;
  byId("filter").value = query.filter;
  byId("filter").addEventListener("input", handleFilterInput);
  byId("sort").addEventListener("change", handleSortChange);
  byId("watch-form").addEventListener("submit", handleWatchSubmit);
  watch(query.streams.length > 0 ? query.streams : dashboard.config.streams);
  window.setInterval(checkStale, STALE_CHECK_MS);
}

init();

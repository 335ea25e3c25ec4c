/**
 * Deterministic audit-event content for the simulator.
 *
 * `EventFactory` turns a PRNG stream into events shaped like the events-stream API's: real action
 * ids, actors with odd emails and undocumented auth types, context/container/location objects
 * that are sometimes empty or absent, unknown keys,
 * non-ASCII names, and `attributes.time` in every RFC 3339 spelling seen. It also derives
 * malformed records (invalid per Panther's Atlassian.Audit schema) and changed re-deliveries.
 * Every valid event is rendered with `id` as its first key; the store relies on that.
 */
import type { AuditEvent } from '../types.js';
import type { Prng } from './prng.js';

/** Every way a record is made invalid; `malformedKind` picks one uniformly. */
export const MALFORMED_KINDS = [
  'missing-id',
  'id-number',
  'missing-type',
  'attributes-string',
  'attributes-null',
  'links-missing',
  'links-string',
  'time-word',
  'time-number',
  'time-missing',
  'time-invalid-date',
  'time-no-zone',
  'context-not-array',
  'record-number',
  'record-string',
  'record-null',
  'record-array',
  'record-bool',
  'record-empty-object',
] as const;
export type MalformedKind = (typeof MALFORMED_KINDS)[number];

/** How `attributes.time` is spelled; all are valid RFC 3339. */
export type TimeStyle = 'ms-z' | 'no-ms' | 'micro' | 'offset+02:00' | 'offset-05:30' | 'offset+00:00';

const TIME_STYLES: ReadonlyArray<readonly [TimeStyle, number]> = [
  ['ms-z', 60],
  ['no-ms', 15],
  ['micro', 10],
  ['offset+02:00', 7],
  ['offset-05:30', 5],
  ['offset+00:00', 3],
];

/** Formats epoch ms `ms` in `style`; `micro` adds three sub-millisecond digits (never rounding up). */
export function formatTime(ms: number, style: TimeStyle, micro = 0): string {
  const iso = new Date(ms).toISOString(); // 2024-10-03T10:44:26.457Z
  switch (style) {
    case 'ms-z':
      return iso;
    case 'no-ms':
      return `${iso.slice(0, 19)}Z`;
    case 'micro':
      return `${iso.slice(0, 23)}${String(micro).padStart(3, '0')}Z`;
    default: {
      const sign = style[6] === '-' ? -1 : 1;
      const hh = Number(style.slice(7, 9));
      const mm = Number(style.slice(10, 12));
      const offMin = sign * (hh * 60 + mm);
      const local = new Date(ms + offMin * 60_000).toISOString();
      return `${local.slice(0, 23)}${style.slice(6)}`;
    }
  }
}

export interface EventAction {
  id: string;
  displayName: string;
  groupDisplayNames: string[];
}

/** The action ids of the design doc, with the display names the event-actions endpoint serves. */
export const EVENT_ACTIONS: readonly EventAction[] = [
  { id: 'user_login', displayName: 'User logged in', groupDisplayNames: ['User security'] },
  { id: 'user_login_failed', displayName: 'User login failed', groupDisplayNames: ['User security'] },
  { id: 'user_logged_in_as_user', displayName: 'Logged in as user', groupDisplayNames: ['User security', 'Admin activity'] },
  { id: 'jira_issue_viewed', displayName: 'Viewed Jira issue', groupDisplayNames: ['Jira', 'Product activity'] },
  { id: 'api_token_created', displayName: 'Created API token', groupDisplayNames: ['User security', 'API tokens'] },
  { id: 'added_org_admin', displayName: 'Added organization admin', groupDisplayNames: ['Admin activity'] },
  { id: 'removed_org_admin', displayName: 'Removed organization admin', groupDisplayNames: ['Admin activity'] },
  { id: 'twosv_enforced', displayName: 'Enforced two-step verification', groupDisplayNames: ['Security policies'] },
  { id: 'export_audit_log', displayName: 'Exported audit log', groupDisplayNames: ['Admin activity'] },
  { id: 'site_created', displayName: 'Created site', groupDisplayNames: ['Product access'] },
  { id: 'third_party_integration_connected', displayName: 'Connected third-party integration', groupDisplayNames: ['Apps'] },
  { id: 'confluence_added_content_restriction', displayName: 'Added content restriction', groupDisplayNames: ['Confluence', 'Product activity'] },
  { id: 'org_settings_update', displayName: 'Updated organization settings', groupDisplayNames: ['Organization'] },
];

const ACTION_WEIGHTS: ReadonlyArray<readonly [string, number]> = [
  ['jira_issue_viewed', 40],
  ['user_login', 25],
  ['user_login_failed', 5],
  ['confluence_added_content_restriction', 6],
  ['api_token_created', 4],
  ['org_settings_update', 4],
  ['third_party_integration_connected', 3],
  ['user_logged_in_as_user', 2],
  ['added_org_admin', 2],
  ['export_audit_log', 2],
  ['removed_org_admin', 1],
  ['twosv_enforced', 1],
  ['site_created', 1],
];

// [display name, ASCII form for the email]; some names are deliberately non-ASCII so that
// multi-byte UTF-8 sequences cross chunk boundaries downstream.
const FIRST: ReadonlyArray<readonly [string, string]> = [
  ['Alice', 'alice'], ['Bob', 'bob'], ['Chen', 'chen'], ['Dana', 'dana'], ['Émile', 'emile'],
  ['Fatima', 'fatima'], ['Gustav', 'gustav'], ['Hiroshi', 'hiroshi'], ['Ingrid', 'ingrid'],
  ['José', 'jose'], ['Kwame', 'kwame'], ['Lena', 'lena'], ['Mateus', 'mateus'], ['Nadia', 'nadia'],
  ['Oskar', 'oskar'], ['Priya', 'priya'], ['Quinn', 'quinn'], ['Rafał', 'rafal'], ['Søren', 'soren'],
  ['Tomás', 'tomas'], ['Uma', 'uma'], ['Viktor', 'viktor'], ['Wen', 'wen'], ['Zoë', 'zoe'],
  ['美咲', 'misaki'], ['Ольга', 'olga'],
];
const LAST: ReadonlyArray<readonly [string, string]> = [
  ['Smith', 'smith'], ['García', 'garcia'], ['Müller', 'muller'], ['Nguyen', 'nguyen'],
  ['Okafor', 'okafor'], ['Kowalski', 'kowalski'], ['Johansson', 'johansson'], ['Rossi', 'rossi'],
  ['Tanaka', 'tanaka'], ['Dubois', 'dubois'], ['Patel', 'patel'], ['O\'Brien', 'obrien'],
  ['Łukasiewicz', 'lukasiewicz'], ['Fernández', 'fernandez'], ['Larsen', 'larsen'], ['Kim', 'kim'],
  ['田中', 'tanaka'], ['Иванова', 'ivanova'],
];
const EMAIL_DOMAINS = ['example.com', 'example.org', 'corp.example.net'] as const;
const NON_EMAILS = ['jira-automation', 'N/A', '', 'svc_backup (no email)', 'unknown'] as const;

const LOCATIONS: ReadonlyArray<readonly [string, string, string, number, number]> = [
  ['San Francisco', 'California', 'United States', 37.7749, -122.4194],
  ['New York', 'New York', 'United States', 40.7128, -74.006],
  ['Austin', 'Texas', 'United States', 30.2672, -97.7431],
  ['Sydney', 'New South Wales', 'Australia', -33.8688, 151.2093],
  ['Bengaluru', 'Karnataka', 'India', 12.9716, 77.5946],
  ['Berlin', 'Berlin', 'Germany', 52.52, 13.405],
  ['Zürich', 'Zurich', 'Switzerland', 47.3769, 8.5417],
  ['São Paulo', 'São Paulo', 'Brazil', -23.5505, -46.6333],
  ['Tokyo', 'Tokyo', 'Japan', 35.6762, 139.6503],
  ['Kraków', 'Lesser Poland', 'Poland', 50.0647, 19.945],
  ['Amsterdam', 'North Holland', 'Netherlands', 52.3676, 4.9041],
  ['Dublin', 'Leinster', 'Ireland', 53.3498, -6.2603],
  ['Montréal', 'Quebec', 'Canada', 45.5017, -73.5673],
  ['Gdańsk', 'Pomerania', 'Poland', 54.352, 18.6466],
];

const SITE_NAMES = ['acme', 'acme-eu', 'globex', 'initech-sandbox', 'umbrella', 'hooli-dev'] as const;
const GROUP_NAMES = [
  'jira-software-users', 'confluence-users', 'site-admins', 'org-admins', 'contractors',
  'security-team', 'Développeurs', 'finance-readonly', 'sre-oncall', 'marketing',
] as const;
const APP_NAMES: ReadonlyArray<readonly [string, string]> = [
  ['Slack', 'com.atlassian.slack'], ['GitHub for Jira', 'com.github.integration.production'],
  ['Zapier', 'zapier-jira'], ['Tempo Timesheets', 'is.origo.jira.tempo-plugin'],
  ['draw.io', 'com.mxgraph.confluence.plugins.diagramly'], ['Jira Cloud for Sheets', 'jira-sheets'],
];
const PROJECT_KEYS = ['WEB', 'OPS', 'SEC', 'DATA', 'MOB', 'HR', 'FIN'] as const;
const PAGE_TITLES = ['Q3 roadmap', 'Incident 2024-117 postmortem', 'Onboarding checklist', 'Salary bands (confidential)', 'Architecture decision records'] as const;
const TOKEN_LABELS = ['ci-pipeline', 'jira-backup', 'Zapier', 'local-dev', 'terraform', 'reporting-script'] as const;
const USER_AGENTS = [
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:131.0) Gecko/20100101 Firefox/131.0',
  'curl/8.5.0',
  'python-requests/2.32.3',
  'Atlassian Mobile/2024.10 (iOS 17.6)',
] as const;

interface User { id: string; name: string; email: string }
interface Site { id: string; siteName: string; siteHostName: string }
interface Group { id: string; groupName: string }
interface App { id: string; appName: string; appKey: string }

type Json = Record<string, unknown>;

export interface MadeEvent {
  event: AuditEvent;
  /** Epoch ms of `attributes.time`. */
  timeMs: number;
}

export class EventFactory {
  readonly #p: Prng;
  readonly #orgId: string;
  readonly #base: string;
  readonly #users: User[] = [];
  readonly #sites: Site[] = [];
  readonly #groups: Group[] = [];
  readonly #apps: App[] = [];

  constructor(prng: Prng, orgId: string, linkBase: string) {
    this.#p = prng;
    this.#orgId = orgId;
    this.#base = linkBase.replace(/\/+$/, '');
    const p = prng;
    for (let i = 0; i < 400; i++) {
      const [fn, fa] = p.pick(FIRST);
      const [ln, la] = p.pick(LAST);
      const id = p.chance(0.5) ? p.hex(12) : `${p.pick(['557058', '712020', '5d9f0e'])}:${p.uuid()}`;
      const email = p.chance(0.04) ? p.pick(NON_EMAILS) : `${fa}.${la}${p.chance(0.3) ? p.range(1, 99) : ''}@${p.pick(EMAIL_DOMAINS)}`;
      this.#users.push({ id, name: `${fn} ${ln}`, email });
    }
    for (const name of SITE_NAMES) this.#sites.push({ id: p.uuid(), siteName: name, siteHostName: `${name}.atlassian.net` });
    for (const name of GROUP_NAMES) this.#groups.push({ id: p.uuid(), groupName: name });
    for (const [appName, appKey] of APP_NAMES) this.#apps.push({ id: p.uuid(), appName, appKey });
  }

  /**
   * A valid event processed at `processedAt`. `late` forces a late event (time 2 min to 8 h
   * before `processedAt`); otherwise `lateRate` decides.
   */
  make(processedAt: number, lateRate: number, late = false): MadeEvent {
    const p = this.#p;
    const id = p.uuid();
    const isLate = late || p.chance(lateRate);
    // Late: log-uniform between 2 min and 8 h. Normal: 20 ms to 90 s ("a few minutes to appear").
    const delay = isLate ? Math.round(Math.exp(Math.log(120_000) + p.next() * Math.log((8 * 3_600_000) / 120_000))) : p.range(20, 90_000);
    const timeMs = processedAt - delay;
    const style = p.weighted(TIME_STYLES);
    const time = formatTime(timeMs, style, p.int(1000));
    const action = p.weighted(ACTION_WEIGHTS);
    const user = p.pick(this.#users);
    const site = p.pick(this.#sites);
    const actor = this.#actor(user, action);
    const { context, message } = this.#contextAndMessage(action, site);

    const attributes: Json = { time, processedAt: new Date(processedAt).toISOString(), action, actor, context };
    const containerRoll = p.next();
    if (containerRoll < 0.75) attributes.container = action.startsWith('jira') || action.startsWith('confluence') || action.startsWith('user_login') || action === 'third_party_integration_connected' ? [this.#siteItem(site, false)] : [];
    else if (containerRoll < 0.85) attributes.container = [];
    const locRoll = p.next();
    if (locRoll < 0.8) attributes.location = this.#location();
    else if (locRoll < 0.88) attributes.location = {};
    else if (locRoll < 0.93) attributes.location = { ip: this.#ip() };
    if (p.chance(0.3)) attributes.userAgent = p.pick(USER_AGENTS);

    // Key order varies a little, as in real payloads: links before or after message/relations.
    const links = { self: `${this.#base}/admin/v1/orgs/${this.#orgId}/events/${id}` };
    const linksFirst = p.chance(0.5);
    const event: AuditEvent = linksFirst
      ? { id, type: 'events', attributes: attributes as AuditEvent['attributes'], links }
      : ({ id, type: 'events', attributes: attributes as AuditEvent['attributes'] } as AuditEvent);
    const msgRoll = p.next();
    if (msgRoll < 0.92) event.message = { content: message, format: 'simple' };
    else if (msgRoll < 0.96) event.message = {};
    if (p.chance(0.3)) event.relations = null;
    else if (p.chance(0.05)) event.relations = { parent: null };
    if (!linksFirst) event.links = links;
    return { event, timeMs };
  }

  /** A malformed record derived from `made` (invalid per Panther's Atlassian.Audit schema). */
  malform(made: MadeEvent): { kind: MalformedKind; record: unknown } {
    const p = this.#p;
    const kind = p.pick(MALFORMED_KINDS);
    const ev = made.event as Json;
    const attrs = ev.attributes as Json;
    switch (kind) {
      case 'missing-id':
        delete ev.id;
        return { kind, record: ev };
      case 'id-number':
        ev.id = p.range(1, 2_000_000_000);
        return { kind, record: ev };
      case 'missing-type':
        delete ev.type;
        return { kind, record: ev };
      case 'attributes-string':
        ev.attributes = JSON.stringify(attrs);
        return { kind, record: ev };
      case 'attributes-null':
        ev.attributes = null;
        return { kind, record: ev };
      case 'links-missing':
        delete ev.links;
        return { kind, record: ev };
      case 'links-string':
        ev.links = (ev.links as Json).self;
        return { kind, record: ev };
      case 'time-word':
        attrs.time = p.pick(['yesterday', 'now', 'N/A', '']);
        return { kind, record: ev };
      case 'time-number':
        attrs.time = made.timeMs;
        return { kind, record: ev };
      case 'time-missing':
        delete attrs.time;
        return { kind, record: ev };
      case 'time-invalid-date':
        attrs.time = '2024-13-45T99:61:00Z';
        return { kind, record: ev };
      case 'time-no-zone':
        attrs.time = new Date(made.timeMs).toISOString().slice(0, 19).replace('T', ' ');
        return { kind, record: ev };
      case 'context-not-array':
        attrs.context = { id: p.uuid(), type: 'users' };
        return { kind, record: ev };
      case 'record-number':
        return { kind, record: p.range(0, 1_000_000) };
      case 'record-string':
        return { kind, record: JSON.stringify(ev) };
      case 'record-null':
        return { kind, record: null };
      case 'record-array':
        return { kind, record: [ev] };
      case 'record-bool':
        return { kind, record: p.chance(0.5) };
      case 'record-empty-object':
        return { kind, record: {} };
    }
  }

  /** A re-delivery of `original` with different content: re-processed at `processedAt`. */
  variant(original: AuditEvent, processedAt: number): AuditEvent {
    const copy = structuredClone(original);
    copy.attributes.processedAt = new Date(processedAt).toISOString();
    copy.attributes.redelivery = { reason: this.#p.pick(['reprocessed', 'backfill', 'replay']) };
    return copy;
  }

  #actor(user: User, action: string): Json {
    const p = this.#p;
    const links = { self: `${this.#base}/users/${user.id}/manage/profile`, alt: `https://admin.atlassian.com/o/${this.#orgId}/users/${user.id}` };
    if (action === 'third_party_integration_connected' && p.chance(0.5)) {
      const app = p.pick(this.#apps);
      return { id: app.id, name: app.appName, app: { id: app.id, name: app.appName, key: app.appKey }, links };
    }
    const actor: Json = { id: user.id, name: user.name, email: user.email };
    const authRoll = p.next();
    if (authRoll < 0.35) actor.auth = { authType: 'session' };
    else if (authRoll < 0.55) actor.auth = { authType: 'api_token', tokenId: p.uuid(), tokenLabel: p.pick(TOKEN_LABELS) };
    else if (authRoll < 0.65) actor.auth = { authType: 'oauth' };
    else if (authRoll < 0.7) actor.auth = { authType: 'basic' };
    else if (authRoll < 0.75) actor.auth = {};
    if (action === 'user_logged_in_as_user') {
      const admin = p.pick(this.#users);
      actor.onBehalfOf = { id: admin.id, name: admin.name, email: admin.email };
    }
    actor.links = links;
    return actor;
  }

  #contextAndMessage(action: string, site: Site): { context: Json[]; message: string } {
    const p = this.#p;
    const other = p.pick(this.#users);
    switch (action) {
      case 'user_login':
        return { context: p.chance(0.7) ? [this.#siteItem(site, true)] : [], message: 'User logged in' };
      case 'user_login_failed':
        return { context: [], message: `User login failed: ${p.pick(['invalid password', 'account locked', 'two-step verification failed'])}` };
      case 'user_logged_in_as_user':
        return { context: [this.#userItem(other)], message: `Logged in as ${other.name}` };
      case 'jira_issue_viewed': {
        const key = `${p.pick(PROJECT_KEYS)}-${p.range(1, 30_000)}`;
        return { context: [this.#siteItem(site, true)], message: `Viewed Jira issue ${key}` };
      }
      case 'api_token_created':
        return { context: [], message: `Created API token '${p.pick(TOKEN_LABELS)}'` };
      case 'added_org_admin':
        return { context: [this.#userItem(other), this.#orgItem()], message: `Added ${other.name} as an organization admin` };
      case 'removed_org_admin':
        return { context: [this.#userItem(other), this.#orgItem()], message: `Removed ${other.name} as an organization admin` };
      case 'twosv_enforced':
        return { context: [this.#orgItem()], message: 'Enforced two-step verification for all managed accounts' };
      case 'export_audit_log':
        return { context: [this.#orgItem()], message: 'Exported the organization audit log' };
      case 'site_created':
        return { context: [this.#siteItem(site, true)], message: `Created site ${site.siteHostName}` };
      case 'third_party_integration_connected': {
        const app = p.pick(this.#apps);
        return { context: [this.#appItem(app), this.#siteItem(site, true)], message: `Connected ${app.appName} to ${site.siteHostName}` };
      }
      case 'confluence_added_content_restriction': {
        const group = p.pick(this.#groups);
        return {
          context: [this.#siteItem(site, true), this.#groupItem(group), this.#userItem(other)],
          message: `Added view restriction for ${group.groupName} to page “${p.pick(PAGE_TITLES)}”`,
        };
      }
      default:
        return { context: [this.#orgItem()], message: `Updated organization setting ${p.pick(['data residency', 'user provisioning', 'session duration', 'IP allowlist'])}` };
    }
  }

  #userItem(u: User): Json {
    return { id: u.id, type: 'users', attributes: { name: u.name, email: u.email, accountType: 'atlassian' }, links: { self: `${this.#base}/users/${u.id}/manage/profile`, alt: `https://admin.atlassian.com/o/${this.#orgId}/users/${u.id}` } };
  }
  #siteItem(s: Site, withSelf: boolean): Json {
    const links: Json = withSelf ? { self: `${this.#base}/admin/v1/orgs/${this.#orgId}/sites/${s.id}`, alt: `https://${s.siteHostName}` } : { alt: `https://${s.siteHostName}` };
    return { id: s.id, type: 'sites', attributes: { siteName: s.siteName, siteHostName: s.siteHostName }, links };
  }
  #groupItem(g: Group): Json {
    return { id: g.id, type: 'groups', attributes: { groupName: g.groupName }, links: { self: `${this.#base}/admin/v1/orgs/${this.#orgId}/groups/${g.id}`, alt: `https://admin.atlassian.com/o/${this.#orgId}/groups/${g.id}` } };
  }
  #appItem(a: App): Json {
    return { id: a.id, type: 'apps', attributes: { appName: a.appName, appKey: a.appKey }, links: { alt: `https://marketplace.atlassian.com/apps/${a.appKey}` } };
  }
  #orgItem(): Json {
    return { id: this.#orgId, type: 'orgs', attributes: { orgName: 'Acme Corporation' }, links: { self: `${this.#base}/admin/v1/orgs/${this.#orgId}`, alt: `https://admin.atlassian.com/o/${this.#orgId}/overview` } };
  }
  #location(): Json {
    const p = this.#p;
    const [city, regionName, countryName, lat, lon] = p.pick(LOCATIONS);
    return { ip: this.#ip(), geo: `${(lat + (p.next() - 0.5) * 0.1).toFixed(4)},${(lon + (p.next() - 0.5) * 0.1).toFixed(4)}`, countryName, regionName, city };
  }
  #ip(): string {
    const p = this.#p;
    if (p.chance(0.1)) return `2001:db8:${p.hex(2)}:${p.hex(2)}::${p.hex(2)}`;
    return `${p.pick([192, 198, 203, 81, 104, 52])}.${p.int(256)}.${p.int(256)}.${p.range(1, 254)}`;
  }
}

// Rule evaluation as a user sees it through a real webhook receiver and the history API: every
// operator (gt, lt, eq with tolerance, change_pct over a window, crosses_above/below), price
// rules on a token, change_24h against back-dated history, protocol totals, wildcard scopes,
// ANDed conditions, throttling under a burst, flapping with resolved notices, and the `alert`
// realtime event on the owner's sockets.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, makeKey } from './lib/rtad.mjs';
import { metric, sioConnect, wsConnect, closeAllClients, received } from './lib/rt.mjs';
import {
    alertEnv, startWebhookReceiver, createRule, tvl, price, history, settle,
    UUIDV7, T,
    stopClean,
} from './lib/alerts.mjs';

const near = (a, b, what) => assert.ok(typeof a === 'number' && Math.abs(a - b) < 1e-9,
    `${what}: expected ~${b}, got ${a}`);

describe('alert rule evaluation', () => {
    let rtad;
    let hooks;
    let key;
    let otherKey;
    let n = 0;

    before(async () => {
        hooks = await startWebhookReceiver();
        rtad = await startRtad({ env: alertEnv() });
        key = (await makeKey(rtad, { user: 'eval-user', tier: 'pro' })).key;
        otherKey = (await makeKey(rtad, { user: 'eval-other', tier: 'pro' })).key;
    });
    after(async () => {
        await closeAllClients();
        try {
            await stopClean(rtad);
        } finally {
            await hooks?.close();
        }
    });

    /** Creates a rule (throttle 0 unless given) whose only action is a webhook on a fresh
     *  path; returns {rule, path, secret}. */
    async function hookRule(conditions, extra = {}) {
        const path = `/eval-${++n}`;
        const rule = await createRule(rtad, key, {
            name: `eval ${n}`, throttleMinutes: 0, ...extra,
            conditions: Array.isArray(conditions) ? conditions : [conditions],
            actions: [{ type: 'webhook', target: hooks.url(path) }],
        });
        hooks.setSecret(path, rule.actions[0].secret);
        return { rule, path, secret: rule.actions[0].secret };
    }

    /** Waits for exactly `count` requests on path (and no more after a short settle); returns
     *  their bodies in event order. */
    async function expectHooks(path, count) {
        if (count > 0) await hooks.waitRequests(path, count);
        await settle(500);
        const got = hooks.requests(path);
        assert.equal(got.length, count, `requests on ${path}: ${JSON.stringify(
            got.map((x) => x.json?.data && { state: x.json.data.state,
                value: x.json.data.value }))}`);
        for (const r of got) assert.equal(r.verified, true, `unsigned request on ${path}`);
        // deliveries of different triggers may overtake each other: order them by event
        return got.map((r) => r.json).sort((a, b) => a.data.event.offset - b.data.event.offset);
    }

    it('gt: fires when the value goes above, not again while it stays above, again after ' +
        'it went back below', async () => {
        const { rule, path } = await hookRule({ metric: 'tvl', protocol: 'op-gt',
            chain: 'ethereum', operator: 'gt', threshold: 1000 });
        await tvl(rtad, 'op-gt', 'ethereum', 500); // a new protocol: no tvl_change
        await tvl(rtad, 'op-gt', 'ethereum', 900);
        const ev = await tvl(rtad, 'op-gt', 'ethereum', 1100);
        await tvl(rtad, 'op-gt', 'ethereum', 1200);
        await tvl(rtad, 'op-gt', 'ethereum', 800);
        await tvl(rtad, 'op-gt', 'ethereum', 1300);
        const got = await expectHooks(path, 2);
        assert.equal(got[0].data.series, 'tvl:op-gt:ethereum');
        assert.equal(got[0].data.value, 1100);
        assert.equal(got[0].data.previous, 900);
        assert.equal(got[0].data.event.offset, ev.firstOffset);
        assert.equal(got[1].data.value, 1300);
        const hist = await history(rtad, key, rule.ruleId);
        assert.deepEqual(hist.data.map((t) => t.value), [1300, 1100], 'newest first');
    });

    it('lt', async () => {
        const { path } = await hookRule({ metric: 'tvl', protocol: 'op-lt', chain: 'ethereum',
            operator: 'lt', threshold: 100 });
        await tvl(rtad, 'op-lt', 'ethereum', 500);
        await tvl(rtad, 'op-lt', 'ethereum', 200);
        await tvl(rtad, 'op-lt', 'ethereum', 90);
        await tvl(rtad, 'op-lt', 'ethereum', 80);
        const got = await expectHooks(path, 1);
        assert.equal(got[0].data.value, 90);
    });

    it('eq with the default and an explicit relative tolerance', async () => {
        const exact = await hookRule({ metric: 'tvl', protocol: 'op-eq', chain: 'ethereum',
            operator: 'eq', threshold: 1000 });
        const loose = await hookRule({ metric: 'tvl', protocol: 'op-eq2', chain: 'ethereum',
            operator: 'eq', threshold: 1000, tolerance: 0.01 });
        assert.equal(loose.rule.conditions[0].tolerance, 0.01);
        await tvl(rtad, 'op-eq', 'ethereum', 1);
        await tvl(rtad, 'op-eq', 'ethereum', 1005);
        await tvl(rtad, 'op-eq', 'ethereum', 1000);
        await tvl(rtad, 'op-eq2', 'ethereum', 1);
        await tvl(rtad, 'op-eq2', 'ethereum', 1020);
        await tvl(rtad, 'op-eq2', 'ethereum', 1005);
        assert.equal((await expectHooks(exact.path, 1))[0].data.value, 1000);
        assert.equal((await expectHooks(loose.path, 1))[0].data.value, 1005);
    });

    it('change_pct over a 1 h window: 1000 -> 950 (-5%) does not fire, -> 850 (-15%) ' +
        'does (threshold 0.1); a +12% price move fires a price rule', async () => {
        const { path } = await hookRule({ metric: 'tvl', protocol: 'op-pct', chain: 'ethereum',
            operator: 'change_pct', threshold: 0.1, timeWindow: 3600 });
        await tvl(rtad, 'op-pct', 'ethereum', 1000);
        await tvl(rtad, 'op-pct', 'ethereum', 950);
        await settle(300);
        assert.equal(hooks.requests(path).length, 0, '-5% fired a 10% rule');
        await tvl(rtad, 'op-pct', 'ethereum', 850);
        const got = await expectHooks(path, 1);
        near(got[0].data.value, -0.15, 'change');
        assert.equal(got[0].data.series, 'tvl:op-pct:ethereum');

        const p = await hookRule({ metric: 'price', token: 'coingecko:op-pct-coin',
            operator: 'change_pct', threshold: 0.1, timeWindow: 3600 });
        await price(rtad, 'coingecko:op-pct-coin', 100);
        await price(rtad, 'coingecko:op-pct-coin', 105);
        await price(rtad, 'coingecko:op-pct-coin', 112);
        const pg = await expectHooks(p.path, 1);
        near(pg[0].data.value, 0.12, 'price change');
    });

    it('crosses_above / crosses_below fire on each crossing only', async () => {
        const up = await hookRule({ metric: 'tvl', protocol: 'op-x', chain: 'ethereum',
            operator: 'crosses_above', threshold: 1000 });
        const down = await hookRule({ metric: 'tvl', protocol: 'op-x', chain: 'ethereum',
            operator: 'crosses_below', threshold: 1000 });
        await tvl(rtad, 'op-x', 'ethereum', 900);
        for (const v of [1100, 1200, 900, 800, 1000, 1100, 950]) {
            await tvl(rtad, 'op-x', 'ethereum', v);
        }
        // above: 900->1100 and 1000->1100 (previous <= threshold < current)
        const a = await expectHooks(up.path, 2);
        assert.deepEqual(a.map((x) => [x.data.previous, x.data.value]), [[900, 1100],
            [1000, 1100]]);
        // below: 1200->900 and 1100->950 (previous >= threshold > current)
        const b = await expectHooks(down.path, 2);
        assert.deepEqual(b.map((x) => [x.data.previous, x.data.value]), [[1200, 900],
            [1100, 950]]);
    });

    it('price rule on a token (gt); the first price of a token is not an event', async () => {
        const { rule, path } = await hookRule({ metric: 'price', token: 'coingecko:e2e-eth',
            operator: 'gt', threshold: 2000 });
        await price(rtad, 'coingecko:e2e-eth', 2500); // first price: no event, no firing
        await price(rtad, 'coingecko:e2e-eth', 1900);
        const ev = await price(rtad, 'coingecko:e2e-eth', 2100);
        const got = await expectHooks(path, 1);
        assert.equal(got[0].data.series, 'price:coingecko:e2e-eth');
        assert.equal(got[0].data.value, 2100);
        assert.equal(got[0].data.event.eventType, 'price_change');
        assert.equal(got[0].data.event.token, 'coingecko:e2e-eth');
        assert.equal(got[0].data.event.offset, ev.firstOffset);
        const hist = await history(rtad, key, rule.ruleId);
        assert.equal(hist.data.length, 1);
        assert.equal(hist.data[0].series, 'price:coingecko:e2e-eth');
    });

    it('change_24h against back-dated history: the value 24 h ago is the reference, not ' +
        'a later one', async () => {
        const now = Math.floor(Date.now() / 1000);
        // history first (old points, oldest first), then the rule, then the current value
        await tvl(rtad, 'op-24h', 'ethereum', 1000, now - 25 * 3600);
        await tvl(rtad, 'op-24h', 'ethereum', 2000, now - 23 * 3600);
        const { path } = await hookRule({ metric: 'change_24h', protocol: 'op-24h',
            chain: 'ethereum', operator: 'gt', threshold: 0.2 });
        const lt = await hookRule({ metric: 'change_24h', protocol: 'op-24h',
            chain: 'ethereum', operator: 'lt', threshold: -0.2 });
        // 1300 is +30% against 24 h ago (1000) but -35% against 23 h ago (2000)
        await tvl(rtad, 'op-24h', 'ethereum', 1300, now - 5);
        const got = await expectHooks(path, 1);
        near(got[0].data.value, 0.3, 'change_24h');
        await expectHooks(lt.path, 0);
    });

    it('a protocol without chain watches the protocol total over all chains', async () => {
        const { path } = await hookRule({ metric: 'tvl', protocol: 'op-tot', operator: 'gt',
            threshold: 950 });
        await tvl(rtad, 'op-tot', 'ethereum', 600);
        await tvl(rtad, 'op-tot', 'arbitrum', 300); // total 900
        await tvl(rtad, 'op-tot', 'ethereum', 700); // total 1000
        const got = await expectHooks(path, 1);
        assert.equal(got[0].data.series, 'tvl:op-tot');
        assert.equal(got[0].data.value, 1000);
        assert.equal(got[0].data.previous, 900);
    });

    it('a chain-wide rule (no protocol) keeps a state per series', async () => {
        const { rule, path } = await hookRule({ metric: 'tvl', chain: 'e2e-wild',
            operator: 'gt', threshold: 100 });
        for (const p of ['wild-a', 'wild-b']) {
            await tvl(rtad, p, 'e2e-wild', 50);
            await tvl(rtad, p, 'e2e-wild', 150);
            await tvl(rtad, p, 'e2e-wild', 160);
        }
        await tvl(rtad, 'wild-c', 'ethereum', 50);
        await tvl(rtad, 'wild-c', 'ethereum', 150);
        const got = await expectHooks(path, 2);
        assert.deepEqual(got.map((x) => x.data.series).sort(),
            ['tvl:wild-a:e2e-wild', 'tvl:wild-b:e2e-wild']);
        assert.equal((await history(rtad, key, rule.ruleId)).data.length, 2);
    });

    it('conditions are ANDed', async () => {
        const { path } = await hookRule([
            { metric: 'tvl', protocol: 'op-and', chain: 'ethereum', operator: 'gt',
                threshold: 1000 },
            { metric: 'tvl', protocol: 'op-and', chain: 'ethereum', operator: 'change_pct',
                threshold: 0.1, timeWindow: 3600 },
        ]);
        await tvl(rtad, 'op-and', 'ethereum', 1000);
        await tvl(rtad, 'op-and', 'ethereum', 1050); // > 1000 but +5%
        await settle(300);
        assert.equal(hooks.requests(path).length, 0);
        await tvl(rtad, 'op-and', 'ethereum', 1200); // > 1000 and +20%
        const got = await expectHooks(path, 1);
        assert.equal(got[0].data.event.data.currentValue, 1200);
    });

    it('throttle under a burst: 20 events satisfying a level condition -> one ' +
        'notification; a re-firing within the cooldown is not notified; an edge rule ' +
        'crossing 10 times notifies once', async () => {
        const level = await hookRule({ metric: 'tvl', protocol: 'burst', chain: 'ethereum',
            operator: 'gt', threshold: 1000 }, { throttleMinutes: 5 });
        const edge = await hookRule({ metric: 'tvl', protocol: 'burst-x', chain: 'ethereum',
            operator: 'crosses_above', threshold: 1000 }, { throttleMinutes: 5 });
        const t0 = await metric(rtad, 'rta_alert_triggers_total', { state: 'firing' });
        await tvl(rtad, 'burst', 'ethereum', 500);
        for (let i = 0; i < 20; i++) {
            const r = await tvl(rtad, 'burst', 'ethereum', 1001 + i);
            assert.equal(r.events, 1, JSON.stringify(r));
        }
        await tvl(rtad, 'burst', 'ethereum', 900);
        await tvl(rtad, 'burst', 'ethereum', 1100);
        await tvl(rtad, 'burst-x', 'ethereum', 900);
        for (let i = 0; i < 10; i++) {
            await tvl(rtad, 'burst-x', 'ethereum', 1100 + i);
            await tvl(rtad, 'burst-x', 'ethereum', 900 + i);
        }
        await expectHooks(level.path, 1);
        await expectHooks(edge.path, 1);
        assert.equal((await history(rtad, key, level.rule.ruleId)).data.length, 1);
        assert.equal((await history(rtad, key, edge.rule.ruleId)).data.length, 1);
        assert.equal(await metric(rtad, 'rta_alert_triggers_total', { state: 'firing' }), t0 + 2);
    });

    it('flapping with notifyResolved and throttle 0: firing, resolved, firing', async () => {
        const { rule, path } = await hookRule({ metric: 'tvl', protocol: 'flap',
            chain: 'ethereum', operator: 'gt', threshold: 1000 }, { notifyResolved: true });
        const r0 = await metric(rtad, 'rta_alert_triggers_total', { state: 'resolved' });
        await tvl(rtad, 'flap', 'ethereum', 500);
        await tvl(rtad, 'flap', 'ethereum', 1100);
        await tvl(rtad, 'flap', 'ethereum', 900);
        await tvl(rtad, 'flap', 'ethereum', 1150);
        const got = await expectHooks(path, 3);
        assert.deepEqual(got.map((x) => [x.type, x.data.state, x.data.value]), [
            ['alert.firing', 'firing', 1100],
            ['alert.resolved', 'resolved', 900],
            ['alert.firing', 'firing', 1150],
        ]);
        const hist = await history(rtad, key, rule.ruleId);
        assert.deepEqual(hist.data.map((t) => t.state), ['firing', 'resolved', 'firing']);
        assert.equal(await metric(rtad, 'rta_alert_triggers_total', { state: 'resolved' }),
            r0 + 1);
    });

    it('flapping within the cooldown: the resolved notice pairs with the firing one, the ' +
        're-firing waits for the cooldown', async () => {
        const { path } = await hookRule({ metric: 'tvl', protocol: 'flap5',
            chain: 'ethereum', operator: 'gt', threshold: 1000 },
        { notifyResolved: true, throttleMinutes: 5 });
        await tvl(rtad, 'flap5', 'ethereum', 500);
        await tvl(rtad, 'flap5', 'ethereum', 1100);
        await tvl(rtad, 'flap5', 'ethereum', 900);
        await tvl(rtad, 'flap5', 'ethereum', 1150);
        const got = await expectHooks(path, 2);
        assert.deepEqual(got.map((x) => x.data.state).sort(), ['firing', 'resolved']);
    });

    it('the owner\'s realtime connections get an `alert` event; other users\' do not',
        async () => {
            const mine = await sioConnect(rtad, { apiKey: key });
            const theirs = await sioConnect(rtad, { apiKey: otherKey });
            const ws = await wsConnect(rtad, { apiKey: key });
            const { rule } = await hookRule({ metric: 'tvl', protocol: 'rt-alert',
                chain: 'ethereum', operator: 'gt', threshold: 10 });
            await tvl(rtad, 'rt-alert', 'ethereum', 5);
            const ev = await tvl(rtad, 'rt-alert', 'ethereum', 20);
            const x = await mine.inbox.waitFor((m) => m.event === 'alert', T(5000),
                'alert event');
            const p = x.args[0];
            assert.equal(p.ruleId, rule.ruleId, JSON.stringify(p));
            assert.equal(p.name, rule.name);
            assert.equal(p.state, 'firing');
            assert.equal(p.series, 'tvl:rt-alert:ethereum');
            assert.equal(p.value, 20);
            assert.match(p.eventId, UUIDV7);
            assert.equal(p.offset, ev.firstOffset);
            const w = await ws.inbox.waitFor((m) => m.type === 'alert', T(5000),
                'ws alert message');
            assert.deepEqual(w.data, p);
            await settle(300);
            assert.deepEqual(received(theirs, 'alert'), [], 'another user got the alert');
        });

    it('signatures of every delivery verify and evaluation is counted', async () => {
        assert.ok(hooks.inbox.items.length > 0);
        for (const r of hooks.inbox.items) {
            assert.equal(r.verified, true, `unverified: ${r.path}`); // with the rule's secret
        }
        assert.ok(await metric(rtad, 'rta_alert_evaluations_total') > 0);
    });
});


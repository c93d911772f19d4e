// Webhook delivery as the receiving end and the tracking API see it: Standard Webhooks
// signatures checked by the receiver itself, retries with the same webhook-id (5xx, receiver
// down then up, 429 with Retry-After, a hanging receiver past webhooks.timeout_ms), 410
// disabling the target, other 4xx and 3xx being permanent, dead deliveries and their replay,
// the per-host circuit breaker (rta_notify_breaker_state), and the private-address guard.
// Each test's receiver listens on its own loopback address (127.0.0.x) so that the breaker,
// which counts failures per destination host, only sees that test's failures.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, makeKey, api } from './lib/rtad.mjs';
import { assertError } from './lib/check.mjs';
import { metric, metricsText, samples } from './lib/rt.mjs';
import {
    alertEnv, startWebhookReceiver, createRule, tvl, getDelivery, waitDelivery,
    waitRuleDeliveries, history, assertSignedWebhook, checkDeliveryShape, settle, isStatus,
    until, ISO_MS, T,
    stopClean,
} from './lib/alerts.mjs';

const receivers = [];
let nextOctet = 10;
async function receiver() {
    const r = await startWebhookReceiver({ host: `127.0.0.${nextOctet++}` });
    receivers.push(r);
    return r;
}

// every receiver is closed once all tests of this file are done
after(async () => {
    for (const r of receivers.splice(0)) await r.close();
});

let seq = 0;
/** A gt-100 rule on a fresh pair whose only action posts to hooks.url(path); returns
 *  {rule, secret, fire()} where fire() makes the rule fire once more (below, then above). */
async function webhookRule(h, key, hooks, path, extra = {}) {
    const protocol = `wh-${++seq}`;
    const rule = await createRule(h, key, {
        name: `webhook ${seq}`, throttleMinutes: 0, ...extra,
        conditions: [{ metric: 'tvl', protocol, chain: 'ethereum', operator: 'gt',
            threshold: 100 }],
        actions: [{ type: 'webhook', target: hooks.url(path) }],
    });
    const secret = rule.actions[0].secret;
    hooks.setSecret(path, secret);
    await tvl(h, protocol, 'ethereum', 10);
    let v = 200;
    return {
        rule, secret, protocol,
        async fire() {
            await tvl(h, protocol, 'ethereum', 50);
            return tvl(h, protocol, 'ethereum', v++);
        },
    };
}

describe('webhook deliveries', () => {
    let rtad;
    let key;
    let otherKey;
    before(async () => {
        rtad = await startRtad({ env: alertEnv({ RTA_WEBHOOKS_TIMEOUT_MS: '1000' }) });
        key = (await makeKey(rtad, { user: 'wh-user', tier: 'pro' })).key;
        otherKey = (await makeKey(rtad, { user: 'wh-other', tier: 'pro' })).key;
    });
    after(async () => {
        await stopClean(rtad);
    });

    it('500 three times, then 200: retried with the same webhook-id and body, signed each ' +
        'time; the attempt log tells the story', async () => {
        const hooks = await receiver();
        hooks.on('/flaky', [500, 500, 500, 200]);
        const retries0 = await metric(rtad, 'rta_alert_retries_total');
        const { rule, secret, fire } = await webhookRule(rtad, key, hooks, '/flaky');
        await fire();
        const [d0] = await waitRuleDeliveries(rtad, key, rule.ruleId, 1);
        // between attempts the delivery is pending with a next attempt time and the last error
        const mid = await waitDelivery(rtad, key, d0.id,
            (d) => d.status === 'pending' && d.attempts >= 1, 'a pending retry');
        checkDeliveryShape(mid);
        assert.match(mid.nextAttemptAt ?? '', ISO_MS, JSON.stringify(mid));
        assert.equal(mid.lastStatusCode, 500, JSON.stringify(mid));

        const reqs = await hooks.waitRequests('/flaky', 4);
        for (const r of reqs) assertSignedWebhook(r, secret);
        assert.deepEqual(new Set(reqs.map((r) => r.id)).size, 1, 'one webhook-id');
        assert.equal(reqs[0].id, d0.id, 'webhook-id is the delivery id');
        assert.deepEqual(new Set(reqs.map((r) => r.body)).size, 1, 'same body every time');
        assert.equal(reqs[0].json.data.deliveryId, d0.id);

        const d = await waitDelivery(rtad, key, d0.id, isStatus('delivered'), 'delivered');
        assert.equal(d.attempts, 4);
        assert.equal(d.lastStatusCode, 200);
        assert.equal(d.nextAttemptAt, null);
        assert.match(d.deliveredAt, ISO_MS);
        assert.deepEqual(d.attemptLog.map((a) => [a.attempt, a.statusCode, a.outcome]),
            [[1, 500, 'retry'], [2, 500, 'retry'], [3, 500, 'retry'], [4, 200, 'success']]);
        for (const a of d.attemptLog) {
            assert.match(a.at, ISO_MS);
            assert.ok(Number.isInteger(a.latencyMs) && a.latencyMs >= 0, JSON.stringify(a));
        }
        assert.equal(await metric(rtad, 'rta_alert_retries_total'), retries0 + 3);
        const logs = rtad.logs.filter((l) => l.msg === 'delivery attempt' &&
            l.delivery_id === d0.id);
        assert.equal(logs.length, 4, 'one log line per attempt');
        assert.equal(logs[0].rule_id, rule.ruleId);
        assert.equal(logs[0].trigger_id, d0.triggerId);
    });

    it('receiver down (connection refused), then up: delivered with the same webhook-id',
        async () => {
            const hooks = await receiver();
            const { rule, secret, fire } = await webhookRule(rtad, key, hooks, '/down');
            await hooks.down();
            await fire();
            const [d0] = await waitRuleDeliveries(rtad, key, rule.ruleId, 1);
            const failed = await waitDelivery(rtad, key, d0.id, (d) => d.attempts >= 2,
                'two failed attempts');
            assert.equal(failed.status, 'pending', JSON.stringify(failed));
            assert.equal(failed.attemptLog[0].statusCode, null);
            assert.equal(failed.attemptLog[0].outcome, 'retry');
            assert.ok((failed.attemptLog[0].error ?? '').length > 0, JSON.stringify(failed));
            await hooks.up();
            const d = await waitDelivery(rtad, key, d0.id, isStatus('delivered'), 'delivered');
            assert.ok(d.attempts >= 3, JSON.stringify(d));
            const reqs = hooks.requests('/down');
            assert.equal(reqs.length, 1);
            assertSignedWebhook(reqs[0], secret);
            assert.equal(reqs[0].id, d0.id);
        });

    it('429 with Retry-After: 2 is honoured (the schedule alone says 1 s)', async () => {
        const hooks = await receiver();
        hooks.on('/slow', [{ status: 429, headers: { 'retry-after': '2' } }, 200]);
        const { rule, fire } = await webhookRule(rtad, key, hooks, '/slow');
        await fire();
        const reqs = await hooks.waitRequests('/slow', 2);
        assert.equal(reqs[0].id, reqs[1].id);
        assert.ok(reqs[1].at - reqs[0].at >= 1900,
            `retried after ${reqs[1].at - reqs[0].at} ms despite Retry-After: 2`);
        const [d0] = await waitRuleDeliveries(rtad, key, rule.ruleId, 1);
        const d = await waitDelivery(rtad, key, d0.id, isStatus('delivered'), 'delivered');
        assert.deepEqual(d.attemptLog.map((a) => [a.statusCode, a.outcome]),
            [[429, 'retry'], [200, 'success']]);
    });

    it('a receiver that hangs past webhooks.timeout_ms (1 s) is retried', async () => {
        const hooks = await receiver();
        hooks.on('/hang', ['hang', 200]);
        const { rule, secret, fire } = await webhookRule(rtad, key, hooks, '/hang');
        await fire();
        const reqs = await hooks.waitRequests('/hang', 2);
        assertSignedWebhook(reqs[1], secret);
        assert.equal(reqs[0].id, reqs[1].id);
        const [d0] = await waitRuleDeliveries(rtad, key, rule.ruleId, 1);
        const d = await waitDelivery(rtad, key, d0.id, isStatus('delivered'), 'delivered');
        assert.equal(d.attemptLog.length, 2, JSON.stringify(d));
        const first = d.attemptLog[0];
        assert.equal(first.outcome, 'retry', JSON.stringify(first));
        assert.equal(first.statusCode, null, JSON.stringify(first));
        assert.match(first.error ?? '', /time/i, JSON.stringify(first));
        assert.ok(first.latencyMs >= 900, JSON.stringify(first));
    });

    it('410 Gone disables the target: later triggers for it are `disabled` without an ' +
        'attempt, for every rule that uses it', async () => {
        const hooks = await receiver();
        hooks.on('/gone', 410);
        const dis0 = await metric(rtad, 'rta_alert_notifications_total',
            { channel: 'webhook', status: 'disabled' });
        const a = await webhookRule(rtad, key, hooks, '/gone');
        await a.fire();
        const [d0] = await waitRuleDeliveries(rtad, key, a.rule.ruleId, 1);
        const d = await waitDelivery(rtad, key, d0.id, isStatus('disabled'), 'disabled');
        assert.equal(d.attempts, 1);
        assert.equal(d.lastStatusCode, 410);
        assert.deepEqual(d.attemptLog.map((x) => [x.statusCode, x.outcome]), [[410, 'disabled']]);

        await a.fire();
        const b = await webhookRule(rtad, key, hooks, '/gone');
        await b.fire();
        const second = await waitRuleDeliveries(rtad, key, a.rule.ruleId, 2);
        const third = await waitRuleDeliveries(rtad, key, b.rule.ruleId, 1);
        for (const x of [second.find((y) => y.id !== d0.id), third[0]]) {
            assert.equal(x.status, 'disabled', JSON.stringify(x));
            assert.equal(x.attempts, 0, JSON.stringify(x));
            assert.match(x.note ?? '', /disabled/, JSON.stringify(x));
        }
        await settle(500);
        assert.equal(hooks.requests('/gone').length, 1, 'the disabled target was contacted');
        assert.equal(await metric(rtad, 'rta_alert_notifications_total',
            { channel: 'webhook', status: 'disabled' }), dis0 + 3);
        const audit = await api(rtad, 'GET', '/v1/admin/audit?action=alert.target_disabled',
            { key: rtad.adminKey });
        assert.ok(audit.json.data.some((e) => e.target === hooks.url('/gone')), audit.text);
    });

    it('other 4xx and 3xx are permanent: dead after one attempt, redirects not followed',
        async () => {
            const hooks = await receiver();
            hooks.on('/bad', 400);
            hooks.on('/moved', { status: 302, headers: { location: hooks.url('/elsewhere') } });
            const dead0 = await metric(rtad, 'rta_alert_dead_letters_total');
            const bad = await webhookRule(rtad, key, hooks, '/bad');
            const moved = await webhookRule(rtad, key, hooks, '/moved');
            await bad.fire();
            await moved.fire();
            for (const [r, code] of [[bad, 400], [moved, 302]]) {
                const [d0] = await waitRuleDeliveries(rtad, key, r.rule.ruleId, 1);
                const d = await waitDelivery(rtad, key, d0.id, isStatus('dead'), 'dead');
                assert.equal(d.attempts, 1, JSON.stringify(d));
                assert.equal(d.lastStatusCode, code);
                assert.equal(d.attemptLog[0].outcome, 'dead');
            }
            await settle(1500); // longer than the 1 s retry step: nothing more comes
            assert.equal(hooks.requests('/bad').length, 1);
            assert.equal(hooks.requests('/moved').length, 1);
            assert.equal(hooks.requests('/elsewhere').length, 0, 'a redirect was followed');
            assert.equal(await metric(rtad, 'rta_alert_dead_letters_total'), dead0 + 2);
        });

    it('every attempt failing: dead after the schedule (4 attempts); replay -> 202 and ' +
        'delivered with the same id; replaying a delivered one is 409', async () => {
        const hooks = await receiver();
        hooks.on('/dead', 503);
        const { rule, secret, fire } = await webhookRule(rtad, key, hooks, '/dead');
        await fire();
        const [d0] = await waitRuleDeliveries(rtad, key, rule.ruleId, 1);
        const dead = await waitDelivery(rtad, key, d0.id, isStatus('dead'), 'dead');
        assert.equal(dead.attempts, 4, JSON.stringify(dead));
        assert.deepEqual(dead.attemptLog.map((a) => a.outcome),
            ['retry', 'retry', 'retry', 'dead']);
        assert.equal(dead.nextAttemptAt, null);
        assert.equal(hooks.requests('/dead').length, 4);

        hooks.on('/dead', 200);
        // another user cannot see it, nor replay it
        assertError(await api(rtad, 'POST', `/v1/alerts/deliveries/${d0.id}/retry`,
            { key: otherKey }), 404, 'delivery_not_found');
        await settle(300);
        const still = await getDelivery(rtad, key, d0.id);
        assert.equal(still.status, 'dead',
            `another user's refused (404) replay requeued the delivery: ${JSON.stringify(still)}`);
        assert.equal(hooks.requests('/dead').length, 4, 'another user\'s replay was sent');
        const r = await api(rtad, 'POST', `/v1/alerts/deliveries/${d0.id}/retry`, { key });
        assert.equal(r.status, 202, r.text);
        assert.equal(r.json.id, d0.id);
        assert.equal(r.json.status, 'pending', r.text);
        const d = await waitDelivery(rtad, key, d0.id, isStatus('delivered'), 'delivered');
        assert.equal(d.attemptLog.at(-1).outcome, 'success');
        const reqs = hooks.requests('/dead');
        assert.equal(reqs.length, 5);
        assertSignedWebhook(reqs[4], secret);
        assert.equal(reqs[4].id, d0.id, 'the replay carries the same webhook-id');
        const again = await api(rtad, 'POST', `/v1/alerts/deliveries/${d0.id}/retry`, { key });
        const err = assertError(again, 409, 'delivery_not_dead');
        assert.equal(err.details.status, 'delivered');
        const hist = await history(rtad, key, rule.ruleId);
        assert.equal(hist.data[0].deliveries[0].status, 'delivered');
        assert.equal(hist.data[0].deliveries[0].attemptLog.length, 5);
    });

    it('an unknown delivery id is 404 on GET and on retry', async () => {
        const id = '01900000-0000-7000-8000-000000000000';
        assertError(await api(rtad, 'GET', `/v1/alerts/deliveries/${id}`, { key }), 404,
            'delivery_not_found');
        assertError(await api(rtad, 'POST', `/v1/alerts/deliveries/${id}/retry`, { key }), 404,
            'delivery_not_found');
    });
});

describe('webhook circuit breaker (per host)', () => {
    let rtad;
    let key;
    let hooks;
    before(async () => {
        hooks = await startWebhookReceiver({ host: '127.0.0.1' });
        receivers.push(hooks);
        rtad = await startRtad({ env: alertEnv({
            RTA_ALERTS_RETRY_SCHEDULE: '0,1,1,1,1,1,1,1',
        }) });
        key = (await makeKey(rtad, { user: 'breaker-user', tier: 'pro' })).key;
    });
    after(async () => {
        await stopClean(rtad);
    });

    it('five consecutive 500s open the breaker for 127.0.0.1: no more requests reach the ' +
        'host, attempts fail fast, the gauge says open', async () => {
        hooks.on('/down', 500);
        const { rule, fire } = await webhookRule(rtad, key, hooks, '/down');
        await fire();
        await hooks.waitRequests('/down', 5);
        const gauge = await until(async () => {
            const s = samples(await metricsText(rtad), 'rta_notify_breaker_state')
                .find((x) => x.labels.host === '127.0.0.1');
            return s && s.value === 1 ? s : null;
        }, 'rta_notify_breaker_state{host="127.0.0.1"} 1', T(5000));
        assert.equal(gauge.value, 1);

        // another rule's delivery to the same host is held back too
        const other = await webhookRule(rtad, key, hooks, '/other');
        await other.fire();
        const [o0] = await waitRuleDeliveries(rtad, key, other.rule.ruleId, 1);
        const o = await waitDelivery(rtad, key, o0.id, (d) => d.attempts >= 1, 'an attempt');
        assert.match(o.attemptLog[0].error ?? '', /circuit breaker open/, JSON.stringify(o));
        assert.equal(o.attemptLog[0].statusCode, null);

        const [d0] = await waitRuleDeliveries(rtad, key, rule.ruleId, 1);
        const d = await waitDelivery(rtad, key, d0.id, isStatus('dead'), 'dead', T(20000));
        assert.equal(d.attempts, 8, JSON.stringify(d));
        assert.deepEqual(d.attemptLog.slice(0, 5).map((a) => a.statusCode),
            [500, 500, 500, 500, 500]);
        for (const a of d.attemptLog.slice(5)) {
            assert.equal(a.statusCode, null, JSON.stringify(a));
            assert.match(a.error ?? '', /circuit breaker open for 127\.0\.0\.1/,
                JSON.stringify(a));
        }
        assert.equal(hooks.requests('/down').length, 5, 'requests reached an open breaker');
        assert.equal(hooks.requests('/other').length, 0, 'requests reached an open breaker');
        const text = await metricsText(rtad);
        assert.match(text, /^rta_notify_breaker_state\{host="127\.0\.0\.1"\} 1$/m);
    });
});

describe('webhooks to private addresses', () => {
    let rtad;
    let key;
    let hooks;
    before(async () => {
        hooks = await receiver();
        const env = alertEnv();
        delete env.RTA_WEBHOOKS_ALLOW_PRIVATE;
        rtad = await startRtad({ env });
        key = (await makeKey(rtad, { user: 'private-user', tier: 'pro' })).key;
    });
    after(async () => {
        await stopClean(rtad);
    });

    it('are refused unless webhooks.allow_private: dead, nothing sent', async () => {
        const { rule, fire } = await webhookRule(rtad, key, hooks, '/private');
        await fire();
        const [d0] = await waitRuleDeliveries(rtad, key, rule.ruleId, 1);
        const d = await waitDelivery(rtad, key, d0.id, isStatus('dead'), 'dead');
        assert.equal(d.attempts, 1);
        assert.match(d.lastError ?? '', /private/, JSON.stringify(d));
        await settle(300);
        assert.equal(hooks.requests('/private').length, 0);
    });
});

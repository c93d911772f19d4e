// Durability of the alert outbox across crashes and restarts, as a webhook receiver and the
// tracking API see it: kill -9 while a delivery is in flight (the receiver holds the request),
// kill -9 right after the ingest that triggers, a pending retry and its attempt log surviving
// kill -9, a graceful stop with a delivery in flight, rule state and secrets surviving, and a
// disabled target staying disabled. At-least-once: a duplicate carries the same webhook-id.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, makeKey, api } from './lib/rtad.mjs';
import {
    alertEnv, startWebhookReceiver, createRule, tvl, waitDelivery, waitRuleDeliveries,
    history, assertSignedWebhook, settle, isStatus, T,
    stopClean,
} from './lib/alerts.mjs';

describe('alert deliveries across crashes and restarts', () => {
    let rtad;
    let hooks;
    let key;
    let seq = 0;
    before(async () => {
        hooks = await startWebhookReceiver();
        rtad = await startRtad({ env: alertEnv() });
        key = (await makeKey(rtad, { user: 'crash-user', tier: 'pro' })).key;
    });
    after(async () => {
        hooks?.release(200);
        try {
            await stopClean(rtad);
        } finally {
            await hooks?.close();
        }
    });

    async function hookRule(path) {
        const protocol = `crash-${++seq}`;
        const rule = await createRule(rtad, key, {
            name: `crash ${seq}`, throttleMinutes: 0,
            conditions: [{ metric: 'tvl', protocol, chain: 'ethereum', operator: 'gt',
                threshold: 100 }],
            actions: [{ type: 'webhook', target: hooks.url(path) }],
        });
        hooks.setSecret(path, rule.actions[0].secret);
        await tvl(rtad, protocol, 'ethereum', 10);
        return { rule, protocol, secret: rule.actions[0].secret };
    }

    it('kill -9 while the receiver holds the request: after a restart on the same data ' +
        'directory the notification arrives again with the same webhook-id and the ' +
        'delivery ends delivered', async () => {
        hooks.on('/held', 'hang');
        const { rule, protocol, secret } = await hookRule('/held');
        await tvl(rtad, protocol, 'ethereum', 200);
        const [first] = await hooks.waitRequests('/held', 1);
        assertSignedWebhook(first, secret);
        const [d0] = await waitRuleDeliveries(rtad, key, rule.ruleId, 1);
        assert.equal(d0.status, 'pending', 'in flight: still pending');
        assert.equal(first.id, d0.id);

        await rtad.kill9();
        hooks.on('/held', 200);
        await rtad.restart();
        const reqs = await hooks.waitRequests('/held', 2, T(15000));
        assertSignedWebhook(reqs[1], secret);
        assert.equal(reqs[1].id, first.id, 'the duplicate carries the same webhook-id');
        assert.equal(reqs[1].json.data.deliveryId, d0.id);
        assert.equal(reqs[1].json.data.triggerId, first.json.data.triggerId);
        const d = await waitDelivery(rtad, key, d0.id, isStatus('delivered'), 'delivered');
        assert.equal(d.attemptLog.at(-1).outcome, 'success');
        assert.ok(rtad.logs.some((l) => l.msg === 'delivery attempt' && l.delivery_id === d0.id &&
            l.outcome === 'success'), 'no "delivery attempt" log line after the restart');

        // the rule, its firing state and its secret survived: staying above does not notify
        const g = await api(rtad, 'GET', `/v1/alerts/rules/${rule.ruleId}`, { key });
        assert.equal(g.status, 200, g.text);
        await tvl(rtad, protocol, 'ethereum', 300);
        await settle(800);
        assert.equal(hooks.requests('/held').length, 2, 'a firing rule notified again');
        assert.equal((await history(rtad, key, rule.ruleId)).data.length, 1);
    });

    it('kill -9 right after the ingest that triggers (no attempt answered yet): delivered ' +
        'after the restart', async () => {
        hooks.on('/early', 'hang'); // an attempt that starts before the kill stays unanswered
        const { rule, protocol, secret } = await hookRule('/early');
        await tvl(rtad, protocol, 'ethereum', 200);
        await rtad.kill9();
        const sentBefore = hooks.requests('/early').length;
        assert.ok(!rtad.allLogs.some((l) => l.msg === 'delivery attempt' &&
            l.rule_id === rule.ruleId), 'an attempt finished before the kill');
        hooks.on('/early', 200);
        await rtad.restart();
        const triggered = rtad.allLogs.filter((l) => l.msg === 'alert triggered' &&
            l.rule_id === rule.ruleId);
        assert.equal(triggered.length, 1, 'the rule fired before the kill');
        // the trigger's outbox row must have survived the kill
        await waitRuleDeliveries(rtad, key, rule.ruleId, 1, { ms: T(5000) }).catch((e) => {
            throw new Error('the trigger logged before kill -9 (' + JSON.stringify(triggered[0]) +
                ') has no delivery after the restart (ingest answered 200 before the outbox ' +
                'row was committed): ' + e.message);
        });
        const reqs = await hooks.waitRequests('/early', sentBefore + 1, T(15000));
        assertSignedWebhook(reqs.at(-1), secret);
        const [d0] = await waitRuleDeliveries(rtad, key, rule.ruleId, 1);
        await waitDelivery(rtad, key, d0.id, isStatus('delivered'), 'delivered');
        assert.ok(reqs.every((r) => r.id === d0.id), 'one webhook-id');
    });

    it('a pending retry survives kill -9 with its attempt log, and is delivered after the ' +
        'restart', async () => {
        hooks.on('/retry', 500);
        const { rule, protocol, secret } = await hookRule('/retry');
        await tvl(rtad, protocol, 'ethereum', 200);
        const [d0] = await waitRuleDeliveries(rtad, key, rule.ruleId, 1);
        await waitDelivery(rtad, key, d0.id, (d) => d.attempts >= 1 && d.status === 'pending',
            'a failed first attempt');
        await rtad.kill9();
        hooks.on('/retry', 200);
        await rtad.restart();
        const d = await waitDelivery(rtad, key, d0.id, isStatus('delivered'), 'delivered',
            T(15000));
        assert.equal(d.attemptLog[0].statusCode, 500, JSON.stringify(d));
        assert.equal(d.attemptLog.at(-1).outcome, 'success', JSON.stringify(d));
        assert.equal(d.attempts, d.attemptLog.length);
        const reqs = hooks.requests('/retry');
        assert.ok(reqs.every((r) => r.id === d0.id));
        assertSignedWebhook(reqs.at(-1), secret);
    });

    it('a graceful stop with a delivery in flight: the next start delivers it', async () => {
        hooks.on('/stop', 'hang');
        const { rule, protocol } = await hookRule('/stop');
        await tvl(rtad, protocol, 'ethereum', 200);
        const [first] = await hooks.waitRequests('/stop', 1);
        const t0 = Date.now();
        const code = await rtad.stop();
        assert.equal(code, 0, `exit code ${code}; stderr tail: ${rtad.stderr.slice(-5)}`);
        assert.ok(Date.now() - t0 < T(8000), `stop took ${Date.now() - t0} ms`);
        hooks.on('/stop', 200);
        await rtad.restart();
        const reqs = await hooks.waitRequests('/stop', 2, T(15000));
        assert.equal(reqs[1].id, first.id);
        const [d0] = await waitRuleDeliveries(rtad, key, rule.ruleId, 1);
        await waitDelivery(rtad, key, d0.id, isStatus('delivered'), 'delivered');
    });

    it('a target disabled by 410 stays disabled after a restart', async () => {
        hooks.on('/gone', 410);
        const { rule, protocol } = await hookRule('/gone');
        await tvl(rtad, protocol, 'ethereum', 200);
        const [d0] = await waitRuleDeliveries(rtad, key, rule.ruleId, 1);
        await waitDelivery(rtad, key, d0.id, isStatus('disabled'), 'disabled');
        await rtad.restart();
        await tvl(rtad, protocol, 'ethereum', 50);
        await tvl(rtad, protocol, 'ethereum', 210);
        const two = await waitRuleDeliveries(rtad, key, rule.ruleId, 2);
        const next = two.find((x) => x.id !== d0.id);
        await settle(800);
        assert.equal(hooks.requests('/gone').length, 1,
            `the disabled target was contacted again after the restart: ${JSON.stringify(
                await waitDelivery(rtad, key, next.id, () => true, 'x'))}`);
        const d = await waitDelivery(rtad, key, next.id, () => true, 'x');
        assert.equal(d.status, 'disabled', JSON.stringify(d));
    });
});

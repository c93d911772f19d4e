// Realtime metrics, logs and audit: rta_realtime_connections, rta_realtime_subscriptions and
// rta_realtime_deliveries_total follow what clients do; refusals and client messages are
// counted; connect/disconnect log lines and subscription audit entries are written.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, makeKey, keyId } from './lib/rtad.mjs';
import { eventually } from './lib/check.mjs';
import {
    sio, sioConnect, connectError, subscribeOk, emitAck, upgraded, waitEvent, received,
    wsConnect, wsRefused, stopClean, ingestTvl, metricsText, metricSum, samples, T,
} from './lib/rt.mjs';

describe('realtime metrics, logs and audit', () => {
    let rtad;
    let key;
    let kid;
    before(async () => {
        rtad = await startRtad();
        const k = await makeKey(rtad, { user: 'rt-metrics', tier: 'pro' });
        key = k.key;
        kid = k.id;
        await ingestTvl(rtad, [{ protocol: 'met-p', chain: 'ethereum', tvl: 1000 }]);
    });
    after(async () => {
        await stopClean(rtad);
    });

    const sum = (text, name, match) => metricSum(text, name, match);
    async function expectMetrics(check, ms = T(5000)) {
        return eventually(async () => check(await metricsText(rtad)), ms);
    }
    function noNegative(text, name) {
        for (const s of samples(text, name)) {
            assert.ok(s.value >= 0, `${name}${JSON.stringify(s.labels)} = ${s.value}`);
        }
    }

    it('connections, subscriptions and deliveries move with the clients', async () => {
        await expectMetrics((t) => {
            assert.equal(sum(t, 'rta_realtime_connections'), 0);
            assert.equal(sum(t, 'rta_realtime_subscriptions'), 0);
        });
        const a = await sioConnect(rtad, { apiKey: key, transports: ['websocket'] });
        const w = await wsConnect(rtad, { apiKey: key });
        await expectMetrics((t) => {
            assert.equal(sum(t, 'rta_realtime_connections'), 2);
            assert.equal(sum(t, 'rta_realtime_connections', { transport: 'ws' }), 1);
            assert.equal(sum(t, 'rta_realtime_connections', { tier: 'pro' }), 2);
        });
        await subscribeOk(a, { type: 'protocol', protocol: 'met-p' });
        await subscribeOk(a, { type: 'tvl_changes', threshold: 0.01 });
        await subscribeOk(a, { type: 'price', token: 'coingecko:met-token' });
        await w.request({ op: 'subscribe', type: 'protocol', protocol: 'met-p', chain: 'ethereum',
            id: 1 }, 'subscribed');
        await w.request({ op: 'subscribe', type: 'price_changes', threshold: 0.5, id: 2 },
            'subscribed');
        const t1 = await metricsText(rtad);
        assert.equal(sum(t1, 'rta_realtime_subscriptions', { type: 'protocol' }), 2);
        assert.equal(sum(t1, 'rta_realtime_subscriptions', { type: 'tvl_changes' }), 1);
        assert.equal(sum(t1, 'rta_realtime_subscriptions', { type: 'price' }), 1);
        assert.equal(sum(t1, 'rta_realtime_subscriptions', { type: 'price_changes' }), 1);
        const d0 = sum(t1, 'rta_realtime_deliveries_total');

        // one event, two clients (one of them with two matching subscriptions): 2 deliveries
        const r = await ingestTvl(rtad, [{ protocol: 'met-p', chain: 'ethereum', tvl: 1100 }]);
        await waitEvent(a, 'tvl_change', (p) => p.offset === r.firstOffset);
        await w.inbox.waitFor((m) => m.type === 'tvl_change');
        await expectMetrics((t) => assert.equal(sum(t, 'rta_realtime_deliveries_total'),
            d0 + 2));
        assert.equal(received(a, 'tvl_change').length, 1);

        await emitAck(a, 'unsubscribe', { type: 'protocol', protocol: 'met-p' });
        await expectMetrics((t) =>
            assert.equal(sum(t, 'rta_realtime_subscriptions', { type: 'protocol' }), 1));
        w.ws.close(1000);
        await w.closed();
        await expectMetrics((t) => {
            assert.equal(sum(t, 'rta_realtime_connections'), 1);
            assert.equal(sum(t, 'rta_realtime_connections', { transport: 'ws' }), 0);
            assert.equal(sum(t, 'rta_realtime_subscriptions', { type: 'protocol' }), 0);
            assert.equal(sum(t, 'rta_realtime_subscriptions', { type: 'price_changes' }), 0);
            assert.equal(sum(t, 'rta_realtime_subscriptions', { type: 'tvl_changes' }), 1);
        });
        a.disconnect();
        await expectMetrics((t) => {
            assert.equal(sum(t, 'rta_realtime_connections'), 0);
            assert.equal(sum(t, 'rta_realtime_subscriptions'), 0);
            noNegative(t, 'rta_realtime_connections');
            noNegative(t, 'rta_realtime_subscriptions');
        });
    });

    it('a client that upgraded from polling to websocket leaves no connection behind',
        async () => {
            const s = await sioConnect(rtad, { apiKey: key });
            await upgraded(s);
            await expectMetrics((t) => assert.equal(sum(t, 'rta_realtime_connections'), 1));
            s.disconnect();
            await expectMetrics((t) => {
                assert.equal(sum(t, 'rta_realtime_connections'), 0);
                noNegative(t, 'rta_realtime_connections');
            });
        });

    it('refusals are counted in rta_realtime_auth_failures_total by reason', async () => {
        const t0 = await metricsText(rtad);
        const s = sio(rtad, { reconnection: false, transports: ['websocket'] });
        await connectError(s);
        s.disconnect();
        await wsRefused(rtad, { apiKey: 'garbage' });
        await expectMetrics((t) => {
            assert.equal(sum(t, 'rta_realtime_auth_failures_total', { reason: 'missing_api_key' }),
                sum(t0, 'rta_realtime_auth_failures_total', { reason: 'missing_api_key' }) + 1);
            assert.equal(sum(t, 'rta_realtime_auth_failures_total',
                { reason: 'malformed_api_key' }),
            sum(t0, 'rta_realtime_auth_failures_total', { reason: 'malformed_api_key' }) + 1);
        });
    });

    it('client messages are counted in rta_realtime_messages_total{direction="in"}',
        async () => {
            const t0 = await metricsText(rtad);
            const s = await sioConnect(rtad, { apiKey: key, transports: ['websocket'] });
            await subscribeOk(s, { type: 'protocol', protocol: 'msg-p' });
            await emitAck(s, 'unsubscribe', { type: 'protocol', protocol: 'msg-p' });
            const w = await wsConnect(rtad, { apiKey: key });
            await w.request({ op: 'ping', id: 1 }, 'pong');
            await expectMetrics((t) => assert.ok(
                sum(t, 'rta_realtime_messages_total', { direction: 'in' }) >=
                sum(t0, 'rta_realtime_messages_total', { direction: 'in' }) + 3));
            s.disconnect();
            w.close();
        });

    it('realtime connect / disconnect log lines carry key id, transport and reason',
        async () => {
            const from = rtad.logs.length;
            const s = await sioConnect(rtad, { apiKey: key, transports: ['websocket'] });
            const w = await wsConnect(rtad, { apiKey: key });
            s.disconnect();
            w.ws.close(1000);
            await w.closed();
            const id = keyId(key);
            await eventually(() => {
                let lines = rtad.logs.slice(from);
                // earlier tests' clients may log their disconnect late: start at our connects
                const first = lines.findIndex((l) => l.msg === 'realtime connect' &&
                    l.key_id === id);
                assert.ok(first >= 0, 'no realtime connect line');
                lines = lines.slice(first);
                const conn = lines.filter((l) => l.msg === 'realtime connect' && l.key_id === id);
                const disc = lines.filter((l) => l.msg === 'realtime disconnect' &&
                    l.key_id === id);
                assert.equal(conn.length, 2, JSON.stringify(lines));
                assert.equal(disc.length, 2, JSON.stringify(lines));
                for (const l of [...conn, ...disc]) {
                    assert.equal(typeof l.transport, 'string', JSON.stringify(l));
                }
                assert.deepEqual(conn.map((l) => l.transport).sort(), ['socket.io', 'ws']);
                for (const l of disc) assert.equal(typeof l.reason, 'string', JSON.stringify(l));
                for (const l of lines) assert.ok(!JSON.stringify(l).includes(key.slice(22)),
                    'the key secret must not be logged');
            }, T(5000));
        });

    it('subscription.create and subscription.delete are audited', async () => {
        const s = await sioConnect(rtad, { apiKey: key, transports: ['websocket'] });
        await subscribeOk(s, { type: 'protocol', protocol: 'aud-p', chain: 'base' });
        await emitAck(s, 'unsubscribe', { type: 'protocol', protocol: 'aud-p' });
        await eventually(async () => {
            const r = await rtad.api('GET', '/v1/admin/audit?action=subscription.*&limit=100',
                { key: rtad.adminKey });
            assert.equal(r.status, 200, r.text);
            const mine = r.json.data.filter((e) => e.actor === kid || e.actor === keyId(key));
            const create = mine.find((e) => e.action === 'subscription.create' &&
                e.target === 'protocol:aud-p:base');
            const del = mine.find((e) => e.action === 'subscription.delete' &&
                e.target === 'protocol:aud-p:base');
            assert.ok(create && del, `audit entries: ${JSON.stringify(r.json.data).slice(0, 800)}`);
        }, T(8000), 200);
        s.disconnect();
    });
});

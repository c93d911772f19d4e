// State survives restarts: SIGTERM then restart on the same data dir, and kill -9.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { startRtad, makeKey, ingest, sleep } from './lib/rtad.mjs';
import { assertError, eventually } from './lib/check.mjs';

const nowS = () => Math.floor(Date.now() / 1000);

describe('persistence across a graceful restart', () => {
    let rtad;
    let userKey;
    let revoked;
    let lastOffset;
    const t = nowS() - 600;
    before(async () => { rtad = await startRtad(); });
    after(async () => { await rtad?.stop(); });

    it('ingest, keys, then SIGTERM exits 0', async () => {
        userKey = await makeKey(rtad, { user: 'keeper', tier: 'pro', role: 'user', label: 'kept' });
        revoked = await makeKey(rtad, { user: 'gone' });
        const d = await rtad.api('DELETE', `/v1/admin/keys/${revoked.id}`, { key: rtad.adminKey });
        assert.equal(d.status, 200, d.text);
        let r = await ingest(rtad, {
            tvl: [{ protocol: 'p-keep', chain: 'ethereum', tvl: 1000, timestamp: t,
                name: 'Keep', category: 'Dexes' },
            { protocol: 'p-keep', chain: 'base', tvl: 10, timestamp: t }],
            prices: [{ token: 'coingecko:keep', price: 3, timestamp: t, symbol: 'KEEP' }],
        });
        assert.equal(r.status, 200, r.text);
        r = await ingest(rtad, { tvl: [{ protocol: 'p-keep', chain: 'ethereum', tvl: 1200,
            timestamp: t + 60 }],
        prices: [{ token: 'coingecko:keep', price: 4, timestamp: t + 60 }] });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.events, 2);
        lastOffset = r.json.lastOffset;
        const code = await rtad.stop();
        assert.equal(code, 0, `exit code ${code}, signal ${rtad.exitSignal}; stderr tail:\n${
            rtad.stderr.slice(-10).join('\n')}`);
        assert.ok(rtad.logs.some((l) => /shutdown/i.test(l.msg ?? '')),
            'no shutdown log line');
        assert.ok(readdirSync(rtad.dataDir).length > 0, 'data dir is empty');
    });

    it('after restart: protocols, prices and keys are still there', async () => {
        await rtad.restart();
        const p = await rtad.api('GET', '/v1/protocols/p-keep', { key: userKey.key });
        assert.equal(p.status, 200, p.text);
        assert.equal(p.json.name, 'Keep');
        assert.equal(p.json.category, 'Dexes');
        assert.equal(p.json.tvl, 1210);
        assert.deepEqual(Object.fromEntries(p.json.chains.map((c) => [c.chain, c.tvl])),
            { ethereum: 1200, base: 10 });
        const pr = await rtad.api('GET', '/v1/prices/coingecko:keep', { key: userKey.key });
        assert.equal(pr.status, 200, pr.text);
        assert.equal(pr.json.price, 4);
        assert.equal(pr.json.symbol, 'KEEP');
        assertError(await rtad.api('GET', '/v1/protocols', { key: revoked.key }), 401,
            'revoked_api_key');
        const list = await rtad.api('GET', '/v1/admin/keys', { key: rtad.adminKey });
        const row = list.json.data.find((k) => k.id === userKey.id);
        assert.ok(row, 'key missing after restart');
        assert.deepEqual([row.user, row.tier, row.role, row.label, row.createdAt],
            ['keeper', 'pro', 'user', 'kept', userKey.createdAt]);
        const audit = await rtad.api('GET', '/v1/admin/audit?action=key.create',
            { key: rtad.adminKey });
        assert.ok(audit.json.data.some((e) => e.target === userKey.id), 'audit lost on restart');
    });

    it('change detection and event offsets continue after the old ones', async () => {
        const same = await ingest(rtad, { tvl: [{ protocol: 'p-keep', chain: 'ethereum',
            tvl: 1200, timestamp: t + 120 }] });
        assert.equal(same.status, 200, same.text);
        assert.equal(same.json.unchanged, 1, `restored value not used: ${same.text}`);
        assert.equal(same.json.events, 0);
        const r = await ingest(rtad, { tvl: [{ protocol: 'p-keep', chain: 'ethereum',
            tvl: 1500, timestamp: t + 180 }] });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.events, 1, r.text);
        assert.ok(r.json.firstOffset > lastOffset,
            `offset ${r.json.firstOffset} does not continue after ${lastOffset}`);
        const ev = await rtad.api('GET', `/v1/events?after=${r.json.firstOffset - 1}`,
            { key: rtad.adminKey });
        assert.equal(ev.status, 200, ev.text);
        const e = ev.json.data[0];
        assert.equal(e.eventType, 'tvl_change');
        assert.equal(e.data.previousValue, 1200);
        assert.equal(e.data.currentValue, 1500);
        assert.equal(e.offset, r.json.firstOffset);
    });

    it('events from before the restart are either served or flagged incomplete', async () => {
        const ev = await rtad.api('GET', '/v1/events?after=0&limit=1000', { key: rtad.adminKey });
        assert.equal(ev.status, 200, ev.text);
        const old = ev.json.data.filter((e) => e.offset <= lastOffset).map((e) => e.offset);
        const all = Array.from({ length: lastOffset }, (_, i) => i + 1);
        if (old.length !== all.length) {
            assert.equal(ev.json.meta.complete, false,
                `events 1..${lastOffset} are gone (got ${old}) but meta.complete is true`);
        } else {
            assert.deepEqual(old, all);
        }
    });
});

describe('persistence after kill -9', () => {
    let rtad;
    before(async () => {
        rtad = await startRtad({ env: { RTA_STORE_PERSIST_INTERVAL_MS: '100' } });
    });
    after(async () => { await rtad?.stop(); });

    it('a created key survives an immediate crash', async () => {
        const k = await makeKey(rtad, { user: 'crash-test', role: 'reader' });
        await rtad.kill9();
        await rtad.restart();
        const r = await rtad.api('GET', '/v1/chains', { key: k.key });
        assert.equal(r.status, 200, `key lost after kill -9: ${r.text}`);
    });

    it('ingested data is on disk within the persist interval', async () => {
        const r = await ingest(rtad,
            { tvl: [{ protocol: 'p-crash', chain: 'ethereum', tvl: 77 }] });
        assert.equal(r.status, 200, r.text);
        await sleep(1500);
        await rtad.kill9();
        await rtad.restart();
        await eventually(async () => {
            const p = await rtad.api('GET', '/v1/protocols/p-crash', { key: rtad.adminKey });
            assert.equal(p.status, 200, p.text);
            assert.equal(p.json.tvl, 77);
        }, 1000);
    });

    it('the data dir holds the store', async () => {
        assert.ok(existsSync(rtad.dataDir));
        assert.ok(readdirSync(rtad.dataDir).length > 0);
    });
});

// Revoking a key ends the realtime connections made with it, on both transports.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, makeKey, keyId } from './lib/rtad.mjs';
import { sioConnect, lifeEvent, wsConnect, revokeKey, stopClean, connectError, sio, T } from './lib/rt.mjs';

describe('key revocation and live connections', () => {
    let rtad;
    before(async () => { rtad = await startRtad(); });
    after(async () => { await stopClean(rtad); });

    it('closes the Socket.IO and WebSocket clients of a revoked key, and only those', async () => {
        const { key } = await makeKey(rtad, { user: 'rev-a', tier: 'pro' });
        const { key: other } = await makeKey(rtad, { user: 'rev-b', tier: 'pro' });
        const s = await sioConnect(rtad, { apiKey: key, transports: ['websocket'],
            reconnection: false });
        const w = await wsConnect(rtad, { apiKey: key });
        const keep = await sioConnect(rtad, { apiKey: other, transports: ['websocket'],
            reconnection: false });
        const disc = lifeEvent(s, 'disconnect', T(5000));
        const closed = w.closed(T(5000));
        await revokeKey(rtad, keyId(key));
        assert.equal((await disc).reason, 'io server disconnect');
        const info = await closed;
        assert.equal(info.code, 1008);
        assert.ok(keep.connected, 'another key is not affected');
        // and the key cannot come back
        const again = sio(rtad, { apiKey: key, transports: ['websocket'], reconnection: false });
        const err = await connectError(again);
        assert.equal(err.data.code, 'revoked_api_key');
    });
});

// The query region's cell weights, sent to the kernel while a selection changes (a brush stroke): throttled, and
// at most one request in flight, so a slow search never leaves the kernel working through stale regions.

/** Sends `{kind: "cells", weights, id}` (or `{kind: "whole", id}`) to the model's `trait`. `weightsNow()` gives the
 * current weights (Float32Array) or null for the whole image; call `answered(id)` when results for `id` arrive. */
export class RegionSender {
  constructor(model, weightsNow, { trait = "query_region", everyMs = 50, inFlightWaitMs = 1000 } = {}) {
    this.model = model;
    this.weightsNow = weightsNow;
    this.trait = trait;
    this.everyMs = everyMs;
    this.inFlightWaitMs = inFlightWaitMs;
    this.lastSend = -1e9;
    this.sendTimer = null;
    this.pendingTimer = null;
    this.pendingSend = false;
    this.requestId = 0;
    this.answeredId = 0;
    this.sentAt = new Map(); // request id -> when it left (the latency benchmark reads it)
  }

  /** Send now if the last send is `everyMs` old (or `force`), else once when it is; while a request is unanswered
   * (for less than `inFlightWaitMs`) the newest region waits for its answer. */
  send(force = false) {
    const now = performance.now();
    if (this.requestId !== this.answeredId && now - this.lastSend < this.inFlightWaitMs) {
      this.pendingSend = true;
      if (!this.pendingTimer) {
        this.pendingTimer = setTimeout(
          () => {
            this.pendingTimer = null;
            this.answeredId = this.requestId; // the answer never came
            this.flush();
          },
          this.inFlightWaitMs - (now - this.lastSend),
        );
      }
      return;
    }
    this.pendingSend = false;
    if (!force && now - this.lastSend < this.everyMs) {
      if (!this.sendTimer) {
        this.sendTimer = setTimeout(
          () => {
            this.sendTimer = null;
            this.send(true);
          },
          this.everyMs - (now - this.lastSend),
        );
      }
      return;
    }
    clearTimeout(this.sendTimer);
    this.sendTimer = null;
    this.lastSend = now;
    const w = this.weightsNow();
    this.requestId += 1;
    this.sentAt.set(this.requestId, now);
    if (this.sentAt.size > 1000) this.sentAt.delete(this.sentAt.keys().next().value);
    const region = w
      ? { kind: "cells", weights: Array.from(w), id: this.requestId }
      : { kind: "whole", id: this.requestId };
    this.model.set(this.trait, region);
    this.model.save_changes();
  }

  /** Results for request `id` arrived: a region that waited goes now. */
  answered(id) {
    this.answeredId = Math.max(this.answeredId, id);
    clearTimeout(this.pendingTimer);
    this.pendingTimer = null;
    this.flush();
  }

  flush() {
    if (this.pendingSend) this.send(true);
  }
}

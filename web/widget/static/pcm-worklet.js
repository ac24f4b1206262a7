// CareCall widget: microphone capture for the WebSocket fallback. Runs in an AudioContext whose
// sampleRate is the call's input rate (16 kHz): the browser resamples the microphone for us.
// Posts 20 ms frames of little-endian PCM16 (transferred, not copied) and the frame's peak level.
class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const ms = (options && options.processorOptions && options.processorOptions.frameMs) || 20;
    this.size = Math.round((sampleRate * ms) / 1000);
    this.frame = new Int16Array(this.size);
    this.filled = 0;
    this.peak = 0;
    this.running = true;
    this.port.onmessage = (e) => { if (e.data === "stop") this.running = false; };
  }

  process(inputs) {
    if (!this.running) return false;
    const input = inputs[0];
    if (!input || !input.length) return true;
    const channel = input[0];
    for (let i = 0; i < channel.length; i++) {
      const s = Math.max(-1, Math.min(1, channel[i]));
      const a = s < 0 ? -s : s;
      if (a > this.peak) this.peak = a;
      this.frame[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.filled === this.size) {
        const out = this.frame.buffer;
        this.port.postMessage({ pcm: out, peak: this.peak }, [out]);
        this.frame = new Int16Array(this.size); // the old one was transferred (detached)
        this.filled = 0;
        this.peak = 0;
      }
    }
    return true;
  }
}

registerProcessor("carecall-pcm-capture", PcmCapture);

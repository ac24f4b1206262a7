/* CareCall patient widget. One script tag embeds it:
 *
 *   <script src="https://carecall.example/widget/embed.js" data-lang="zh"></script>
 *
 * Options (data-* attributes on the script tag):
 *   data-lang        "zh" | "en"             first language shown (the patient can switch)
 *   data-target      CSS selector            where to put the widget (default: right after the script)
 *   data-transport   "auto" | "webrtc" | "websocket"   auto: WebRTC, WebSocket if WebRTC can't connect
 *   data-echo-cancellation "on" | "off"   the browser's echo canceller on the microphone (default on)
 *   data-rtc-timeout milliseconds            how long WebRTC may take to connect before falling back
 *
 * Everything lives in a shadow root, so the hospital's CSS and the widget's never touch. The host
 * element <carecall-widget> fires DOM events a page can follow: carecall:state, carecall:redflag,
 * carecall:ended, carecall:error (detail = the message text), carecall:message (every call message),
 * and exposes `.carecall` (state, level(), rtcStats(), stats).
 * No third-party code, no network but the CareCall server this script came from.
 */
(() => {
  "use strict";
  const script = document.currentScript;
  if (!script) return;
  const ORIGIN = new URL(script.src, location.href).origin;
  const WS_URL = ORIGIN.replace(/^http/, "ws") + "/ws/call";
  const opt = script.dataset;
  const CALL_RATE = 16000; // WebSocket fallback: PCM16 both ways at this rate

  const TEXT = {
    zh: {
      title: "CareCall 智能导诊",
      subtitle: "语音问诊助手，帮您判断该去哪里就诊",
      langLabel: "语言",
      consentTitle: "开始前请阅读",
      consent: "本次通话由语音机器人接听，会被录音并转成文字，供医院护士审核，用于为您安排就诊。机器人不做诊断。",
      consentCheck: "我已了解并同意录音",
      emergencyHint: (n) => `如有胸痛、呼吸困难、昏迷等危急情况，请直接拨打 ${n}。`,
      start: "开始通话",
      end: "结束通话",
      again: "重新开始",
      states: { idle: "未开始", connecting: "正在连接…", listening: "请讲，我在听", thinking: "正在思考…",
        speaking: "正在说话…", ended: "通话已结束" },
      you: "您", bot: "助手", heardCut: "（被打断）",
      captionsLabel: "通话字幕",
      micDenied: "无法使用麦克风。请在浏览器设置中允许本网站使用麦克风，然后点击“开始通话”重试。",
      micMissing: "没有找到麦克风。请连接麦克风或耳机后重试。",
      fallback: "语音直连未能建立，已自动改用备用连接，通话不受影响。",
      connFailed: "无法连接到服务，请检查网络后重试。",
      connLost: "连接中断，通话已结束。请重新开始通话。",
      restart: "服务刚刚重启，通话已中断。请点击“重新开始”再试一次。",
      busy: "线路繁忙，请几分钟后再试。",
      tooMany: "请求过于频繁，请稍后再试。",
      serverError: "服务出现问题，通话已结束。请稍后再试。",
      unsupported: "此浏览器不支持语音通话，请使用最新版 Chrome、Edge、Safari 或 Firefox。",
      bannerAmbulance: (n) => `这可能是急症。请立即拨打 ${n}。`,
      bannerEmergency: (n) => `请立即前往最近的医院急诊。情况严重时拨打 ${n}。`,
      bannerNurse: "已通知护士，护士会尽快与您联系。",
      callNow: (n) => `拨打 ${n}`,
      outcomeTitle: "下一步怎么做",
      department: "建议科室",
      advice: "注意事项",
      dispositions: {
        emergency_ambulance: "请立即拨打急救电话。",
        emergency: "请立即去医院急诊。",
        consultation_24: "请在 24 小时内看医生。",
        consultation: "请预约门诊，近几天内就诊。",
        self_care: "可以先在家观察护理。",
      },
      safetyNet: (n) => `如果症状加重或出现新的危险信号，请立即就医或拨打 ${n}。`,
    },
    en: {
      title: "CareCall nurse line",
      subtitle: "A voice assistant that helps you decide where to get care",
      langLabel: "Language",
      consentTitle: "Before you start",
      consent: "You will talk to a voice assistant. The call is recorded and transcribed so a hospital nurse can review it and arrange your care. The assistant does not diagnose.",
      consentCheck: "I understand and agree to the recording",
      emergencyHint: (n) => `For chest pain, severe breathing trouble or fainting, call ${n} now.`,
      start: "Start call",
      end: "End call",
      again: "Start again",
      states: { idle: "Not started", connecting: "Connecting…", listening: "Listening — go ahead",
        thinking: "Thinking…", speaking: "Speaking…", ended: "Call ended" },
      you: "You", bot: "Assistant", heardCut: "(interrupted)",
      captionsLabel: "Call captions",
      micDenied: "We can't use your microphone. Allow microphone access for this site in your browser settings, then press Start call again.",
      micMissing: "No microphone was found. Connect a microphone or headset and try again.",
      fallback: "A direct voice connection couldn't be set up, so we switched to a backup connection. Your call goes on.",
      connFailed: "We couldn't connect to the service. Check your internet connection and try again.",
      connLost: "The connection dropped and the call ended. Please start a new call.",
      restart: "The service restarted and your call was cut off. Press Start again to call back.",
      busy: "All lines are busy. Please try again in a few minutes.",
      tooMany: "Too many attempts. Please wait a moment and try again.",
      serverError: "Something went wrong on our side and the call ended. Please try again later.",
      unsupported: "This browser can't make voice calls. Please use a recent Chrome, Edge, Safari or Firefox.",
      bannerAmbulance: (n) => `This may be an emergency. Call ${n} now.`,
      bannerEmergency: (n) => `Go to the nearest emergency department now. If it gets worse, call ${n}.`,
      bannerNurse: "A nurse has been alerted and will contact you soon.",
      callNow: (n) => `Call ${n}`,
      outcomeTitle: "What to do next",
      department: "Department",
      advice: "Advice",
      dispositions: {
        emergency_ambulance: "Call an ambulance now.",
        emergency: "Go to the emergency department now.",
        consultation_24: "See a doctor within 24 hours.",
        consultation: "Book a clinic visit in the next few days.",
        self_care: "You can look after this at home for now.",
      },
      safetyNet: (n) => `If you get worse or notice new warning signs, get care at once or call ${n}.`,
    },
  };
  const DEFAULT_EMERGENCY = { zh: "120", en: "911" };

  const CSS = `
:host { all: initial; display: block; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", "PingFang SC",
  "Microsoft YaHei", "Noto Sans CJK SC", sans-serif; color: #1d2733; }
* { box-sizing: border-box; }
.cc { max-width: 28rem; margin: 0 auto; background: #fff; border: 1px solid #cfd8e3; border-radius: 14px;
  padding: 1rem; box-shadow: 0 2px 10px rgba(20, 40, 60, .08); }
header { display: flex; gap: .75rem; align-items: flex-start; justify-content: space-between; flex-wrap: wrap; }
h2 { font-size: 1.2rem; margin: 0; }
h3 { font-size: 1rem; margin: 0 0 .4rem; }
p { margin: .25rem 0; }
.sub { color: #4a5a6a; font-size: .9rem; }
.langs { display: flex; border: 1px solid #8a9bb0; border-radius: 8px; overflow: hidden; }
.langs button { border: 0; background: #fff; color: #1d2733; padding: .4rem .8rem; font: inherit; cursor: pointer;
  min-height: 44px; }
.langs button[aria-pressed="true"] { background: #0b5cad; color: #fff; }
button:focus-visible, input:focus-visible, a:focus-visible { outline: 3px solid #f5a623; outline-offset: 2px; }
.banner { margin: .75rem 0; padding: .8rem; border-radius: 10px; background: #b00020; color: #fff; font-weight: 700;
  font-size: 1.1rem; }
.banner.nurse { background: #fff4d6; color: #5a3d00; border: 1px solid #e0b44a; }
.banner a { display: inline-block; margin-top: .5rem; background: #fff; color: #b00020; padding: .5rem 1rem;
  border-radius: 8px; text-decoration: none; font-size: 1.1rem; min-height: 44px; }
.consent { margin: .75rem 0; padding: .75rem; background: #f3f7fb; border-radius: 10px; font-size: .95rem; }
.consent label { display: flex; gap: .5rem; align-items: center; margin-top: .5rem; font-weight: 600; min-height: 44px; }
.consent input { width: 1.4rem; height: 1.4rem; }
.hint { font-size: .85rem; color: #4a5a6a; }
.status { display: flex; align-items: center; gap: .5rem; margin: .75rem 0 .25rem; font-weight: 600; }
.dot { width: .8rem; height: .8rem; border-radius: 50%; background: #8a9bb0; flex: none; }
.cc[data-state="connecting"] .dot { background: #f5a623; }
.cc[data-state="listening"] .dot { background: #1a8f3c; }
.cc[data-state="thinking"] .dot { background: #0b5cad; }
.cc[data-state="speaking"] .dot { background: #6a3fb5; }
.meter { height: 6px; background: #e6ecf2; border-radius: 3px; overflow: hidden; margin-bottom: .5rem; }
.meter span { display: block; height: 100%; width: 0; background: #6a3fb5; transition: width .1s; }
.notice { margin: .5rem 0; padding: .6rem .75rem; border-radius: 8px; background: #fdecea; color: #7a1c12; }
.notice.info { background: #e8f1fb; color: #123c66; }
.captions { max-height: 16rem; overflow-y: auto; margin: .5rem 0; padding: 0; }
.captions p { margin: .35rem 0; padding: .4rem .6rem; border-radius: 8px; background: #f3f7fb; }
.captions p.caller { background: #e7f5ec; }
.captions b { font-weight: 600; margin-right: .35rem; }
.partial { color: #4a5a6a; font-style: italic; min-height: 1.5em; margin: .25rem 0; }
.talk { width: 100%; min-height: 56px; border: 0; border-radius: 12px; font: inherit; font-size: 1.15rem;
  font-weight: 700; background: #1a8f3c; color: #fff; cursor: pointer; }
.talk.end { background: #b00020; }
.talk:disabled { background: #9aa8b6; cursor: not-allowed; }
.outcome { margin: .75rem 0; padding: .75rem; border: 2px solid #0b5cad; border-radius: 10px; }
.outcome .disp { font-size: 1.1rem; font-weight: 700; }
[hidden] { display: none !important; }
@media (max-width: 480px) { .cc { border-radius: 0; border-left: 0; border-right: 0; padding: .75rem; } }
@media (prefers-reduced-motion: reduce) { .meter span { transition: none; } }
`;

  const HTML = `
<section class="cc" data-state="idle" role="region" aria-labelledby="cc-title">
  <header>
    <div><h2 id="cc-title"></h2><p class="sub" id="cc-sub"></p></div>
    <div class="langs" role="group" id="cc-langs">
      <button type="button" data-lang="zh" lang="zh">中文</button>
      <button type="button" data-lang="en" lang="en">English</button>
    </div>
  </header>
  <div class="banner" id="cc-banner" role="alert" hidden><p id="cc-banner-text"></p><a id="cc-banner-call" href="#"></a></div>
  <div class="consent" id="cc-consent">
    <h3 id="cc-consent-title"></h3>
    <p id="cc-consent-text"></p>
    <label><input type="checkbox" id="cc-agree"><span id="cc-agree-text"></span></label>
    <p class="hint" id="cc-hint"></p>
  </div>
  <div class="status" role="status" aria-live="polite"><span class="dot" aria-hidden="true"></span><span id="cc-state"></span></div>
  <div class="meter" aria-hidden="true"><span id="cc-meter"></span></div>
  <div class="notice" id="cc-notice" role="alert" hidden></div>
  <div class="captions" id="cc-captions" role="log" aria-live="polite" aria-relevant="additions" tabindex="0"></div>
  <p class="partial" id="cc-partial" aria-hidden="true"></p>
  <div class="outcome" id="cc-outcome" tabindex="-1" hidden>
    <h3 id="cc-outcome-title"></h3><p class="disp" id="cc-disp"></p>
    <p id="cc-dept"></p><div id="cc-advice"></div><p id="cc-safety"></p>
  </div>
  <button type="button" class="talk" id="cc-talk" disabled></button>
  <audio id="cc-audio" autoplay playsinline hidden></audio>
</section>`;

  class CareCallWidget {
    constructor(host) {
      this.host = host;
      this.root = host.attachShadow({ mode: "open" });
      this.root.innerHTML = `<style>${CSS}</style>${HTML}`;
      this.$ = (id) => this.root.getElementById(id);
      this.lang = opt.lang === "en" ? "en" : "zh";
      this.transportPref = opt.transport || "auto";
      this.echoCancellation = opt.echoCancellation !== "off";
      this.rtcTimeout = Number(opt.rtcTimeout) || 10000;
      this.state = "idle";
      this.call = null; // the live connection: {kind, ...}
      this.emergencyNumber = DEFAULT_EMERGENCY[this.lang];
      this.stats = { transport: null, botBytes: 0, botFrames: 0, micFrames: 0, micPeak: 0, fellBack: false, messages: [] };
      this.$("cc-langs").addEventListener("click", (e) => {
        const b = e.target.closest("button[data-lang]");
        if (b && !this.call) this.setLang(b.dataset.lang);
      });
      this.$("cc-agree").addEventListener("change", () => this.render());
      this.$("cc-talk").addEventListener("click", () => (this.call ? this.hangUp() : this.start()));
      host.carecall = this;
      this.setLang(this.lang);
    }

    get t() { return TEXT[this.lang]; }

    setLang(lang) {
      this.lang = lang === "en" ? "en" : "zh";
      if (!this.call) this.emergencyNumber = DEFAULT_EMERGENCY[this.lang];
      this.root.querySelector(".cc").setAttribute("lang", this.lang === "zh" ? "zh-CN" : "en");
      for (const b of this.root.querySelectorAll(".langs button")) {
        b.setAttribute("aria-pressed", String(b.dataset.lang === this.lang));
      }
      const t = this.t;
      this.$("cc-langs").setAttribute("aria-label", t.langLabel);
      this.$("cc-title").textContent = t.title;
      this.$("cc-sub").textContent = t.subtitle;
      this.$("cc-consent-title").textContent = t.consentTitle;
      this.$("cc-consent-text").textContent = t.consent;
      this.$("cc-agree-text").textContent = t.consentCheck;
      this.$("cc-hint").textContent = t.emergencyHint(this.emergencyNumber);
      this.$("cc-captions").setAttribute("aria-label", t.captionsLabel);
      this.$("cc-outcome-title").textContent = t.outcomeTitle;
      this.render();
    }

    render() {
      const t = this.t;
      this.root.querySelector(".cc").dataset.state = this.state;
      this.$("cc-state").textContent = t.states[this.state] || this.state;
      const talk = this.$("cc-talk");
      if (this.call) {
        talk.textContent = t.end;
        talk.classList.add("end");
        talk.disabled = false;
      } else {
        talk.textContent = this.state === "ended" ? t.again : t.start;
        talk.classList.remove("end");
        talk.disabled = !this.$("cc-agree").checked;
      }
      for (const b of this.root.querySelectorAll(".langs button")) b.disabled = !!this.call;
    }

    emit(name, detail) {
      this.host.dispatchEvent(new CustomEvent(`carecall:${name}`, { detail, bubbles: true, composed: true }));
    }

    setState(state) {
      if (this.state === state) return;
      this.state = state;
      this.render();
      this.emit("state", state);
    }

    notice(text, kind = "error") {
      const n = this.$("cc-notice");
      if (!text) { n.hidden = true; n.textContent = ""; return; }
      n.className = kind === "info" ? "notice info" : "notice";
      n.textContent = text;
      n.hidden = false;
      if (kind !== "info") this.emit("error", text);
    }

    // --- starting a call ------------------------------------------------------------------------
    async start() {
      if (this.call || !this.$("cc-agree").checked) return;
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        this.notice(this.t.unsupported);
        return;
      }
      this.resetCallView();
      const call = { kind: null, closed: false, ended: false, cleanup: [] };
      this.call = call;
      this.setState("connecting");
      try {
        call.mic = await navigator.mediaDevices.getUserMedia({
          audio: { echoCancellation: this.echoCancellation, noiseSuppression: true, autoGainControl: true,
                   channelCount: 1 },
        });
      } catch (err) {
        this.finish(err && err.name === "NotFoundError" ? this.t.micMissing : this.t.micDenied, "idle");
        return;
      }
      this.$("cc-consent").hidden = true;
      let pref = this.transportPref;
      if (pref !== "websocket" && !window.RTCPeerConnection) pref = "websocket";
      if (pref !== "websocket") {
        try {
          await this.startRtc(call);
          return;
        } catch (err) {
          for (const f of (call.rtcCleanup || []).splice(0)) { try { f(); } catch (e) { /* closing */ } }
          if (call.dc) call.dc.onclose = null;
          call.pc = null;
          call.dc = null;
          if (call.closed) return;
          if (err && err.final) { this.finish(err.message, "idle"); return; }
          if (pref === "webrtc") { this.finish(this.t.connFailed, "idle"); return; }
          this.stats.fellBack = true;
          this.notice(this.t.fallback, "info");
        }
      }
      try {
        await this.startWs(call);
      } catch (err) {
        if (call.closed) return;
        this.finish(err && err.final ? err.message : this.t.connFailed, "idle");
      }
    }

    resetCallView() {
      this.notice(null);
      this.$("cc-captions").textContent = "";
      this.$("cc-partial").textContent = "";
      this.$("cc-outcome").hidden = true;
      this.$("cc-banner").hidden = true;
      this.stats = { transport: null, botBytes: 0, botFrames: 0, micFrames: 0, micPeak: 0, fellBack: false, messages: [] };
    }

    async getToken() {
      let resp;
      try {
        resp = await fetch(`${ORIGIN}/widget/token`, {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ lang: this.lang }), credentials: "omit",
        });
      } catch (e) {
        throw this.failure(this.t.connFailed, true);
      }
      if (!resp.ok) throw this.httpFailure(resp.status);
      const data = await resp.json();
      if (data.emergency_number) this.emergencyNumber = data.emergency_number;
      return data;
    }

    failure(message, final) {
      const e = new Error(message);
      e.final = final;
      return e;
    }

    httpFailure(status) {
      if (status === 429) return this.failure(this.t.tooMany, true);
      if (status === 503) return this.failure(this.t.busy, true);
      return this.failure(this.t.connFailed, false);
    }

    // --- WebRTC ---------------------------------------------------------------------------------
    async startRtc(call) {
      const grant = await this.getToken();
      const pc = new RTCPeerConnection({ iceServers: grant.ice_servers || [] });
      call.pc = pc;
      call.kind = "webrtc";
      call.rtcCleanup = [() => pc.close()];
      pc.addTransceiver(call.mic.getAudioTracks()[0], { direction: "sendrecv", streams: [call.mic] });
      const dc = pc.createDataChannel("events", { ordered: true });
      call.dc = dc;
      dc.onmessage = (e) => this.onMessage(call, e.data);
      dc.onclose = () => this.onClosed(call, null);
      pc.ontrack = (e) => {
        const stream = e.streams[0] || new MediaStream([e.track]);
        const audio = this.$("cc-audio");
        audio.srcObject = stream;
        audio.play().catch(() => {});
        this.watchLevel(call, (ctx) => ctx.createMediaStreamSource(stream), call.rtcCleanup);
      };
      await pc.setLocalDescription(await pc.createOffer());
      await this.iceGathered(pc, 3000);
      let resp;
      try {
        resp = await fetch(`${ORIGIN}/widget/rtc/offer`, {
          method: "POST", headers: { "Content-Type": "application/json" }, credentials: "omit",
          body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer", token: grant.token, lang: this.lang }),
        });
      } catch (e) {
        throw this.failure(this.t.connFailed, false);
      }
      if (!resp.ok) throw this.httpFailure(resp.status);
      const answer = await resp.json();
      if (call.closed) return;
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(this.failure("timeout", false)), this.rtcTimeout);
        const check = () => {
          if (pc.connectionState === "connected") { clearTimeout(timer); resolve(); }
          else if (pc.connectionState === "failed" || pc.connectionState === "closed") {
            clearTimeout(timer); reject(this.failure("failed", false));
          }
        };
        pc.addEventListener("connectionstatechange", check);
        check();
      });
      call.cleanup.push(...call.rtcCleanup.splice(0));
      this.stats.transport = "webrtc";
      pc.addEventListener("connectionstatechange", () => {
        if (pc.connectionState === "failed") this.onClosed(call, null);
        if (pc.connectionState === "disconnected") {
          setTimeout(() => { if (pc.connectionState !== "connected") this.onClosed(call, null); }, 4000);
        }
      });
    }

    iceGathered(pc, timeoutMs) {
      if (pc.iceGatheringState === "complete") return Promise.resolve();
      return new Promise((resolve) => {
        const done = () => { clearTimeout(timer); pc.removeEventListener("icegatheringstatechange", check); resolve(); };
        const check = () => { if (pc.iceGatheringState === "complete") done(); };
        const timer = setTimeout(done, timeoutMs);
        pc.addEventListener("icegatheringstatechange", check);
      });
    }

    // --- WebSocket fallback -----------------------------------------------------------------------
    async startWs(call) {
      const grant = await this.getToken();
      if (call.closed) return;
      call.kind = "websocket";
      const ctx = new AudioContext({ sampleRate: CALL_RATE, latencyHint: "interactive" });
      call.ctx = ctx;
      call.cleanup.push(() => ctx.close());
      await ctx.audioWorklet.addModule(`${ORIGIN}/widget/static/pcm-worklet.js`);
      const ws = new WebSocket(WS_URL);
      ws.binaryType = "arraybuffer";
      call.ws = ws;
      call.cleanup.push(() => { if (ws.readyState <= 1) ws.close(1000, "caller hung up"); });
      call.out = ctx.createGain();
      call.out.connect(ctx.destination);
      call.playAt = 0;
      call.sources = new Set();
      this.watchLevel(call, () => call.out, call.cleanup);
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(this.failure(this.t.connFailed, true)), 10000);
        ws.onopen = () => { clearTimeout(timer); resolve(); };
        ws.onerror = () => { clearTimeout(timer); reject(this.failure(this.t.connFailed, true)); };
      });
      ws.onerror = null;
      ws.onclose = (e) => this.onClosed(call, e);
      ws.onmessage = (e) => {
        if (typeof e.data === "string") this.onMessage(call, e.data);
        else this.playPcm(call, e.data);
      };
      // consent: the caller ticked the recording notice on this page (start() requires it).
      ws.send(JSON.stringify({ type: "start", language: this.lang, sample_rate: CALL_RATE,
        output_sample_rate: CALL_RATE, token: grant.token, params: { consent: "page" } }));
      const source = ctx.createMediaStreamSource(call.mic);
      const node = new AudioWorkletNode(ctx, "carecall-pcm-capture", { processorOptions: { frameMs: 20 } });
      node.port.onmessage = (e) => {
        if (ws.readyState !== 1) return;
        ws.send(e.data.pcm);
        this.stats.micFrames += 1;
        this.stats.micPeak = Math.max(this.stats.micPeak, e.data.peak);
      };
      // keep the capture node in the rendered graph (muted), or the browser may stop pulling it
      const mute = ctx.createGain();
      mute.gain.value = 0;
      source.connect(node);
      node.connect(mute);
      mute.connect(ctx.destination);
      call.capture = { source, node, mute };
      call.cleanup.push(() => { node.port.postMessage("stop"); source.disconnect(); node.disconnect(); });
      if (ctx.state === "suspended") await ctx.resume();
      this.stats.transport = "websocket";
    }

    playPcm(call, buffer) {
      const ctx = call.ctx;
      if (!ctx || call.closed) return;
      const pcm = new Int16Array(buffer);
      if (!pcm.length) return;
      this.stats.botBytes += buffer.byteLength;
      this.stats.botFrames += 1;
      const audio = ctx.createBuffer(1, pcm.length, CALL_RATE);
      const ch = audio.getChannelData(0);
      for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
      const src = ctx.createBufferSource();
      src.buffer = audio;
      src.connect(call.out);
      const at = Math.max(ctx.currentTime + 0.04, call.playAt);
      src.start(at);
      call.playAt = at + audio.duration;
      call.sources.add(src);
      src.onended = () => call.sources.delete(src);
    }

    flushPlayback(call) {
      if (!call.sources) return;
      for (const src of call.sources) { try { src.stop(); } catch (e) { /* already stopped */ } }
      call.sources.clear();
      call.playAt = 0;
    }

    // --- bot audio level (for the meter, and for tests) ---------------------------------------------
    watchLevel(call, makeSource, cleanup) {
      try {
        const ctx = call.ctx || new AudioContext();
        if (!call.ctx) cleanup.push(() => ctx.close());
        const analyser = ctx.createAnalyser();
        analyser.fftSize = 1024;
        makeSource(ctx).connect(analyser);
        call.analyser = analyser;
        if (ctx.state === "suspended") ctx.resume().catch(() => {});
        const data = new Float32Array(analyser.fftSize);
        const meter = this.$("cc-meter");
        const tick = () => {
          if (call.closed || call.analyser !== analyser) { meter.style.width = "0"; return; }
          analyser.getFloatTimeDomainData(data);
          let sum = 0;
          for (let i = 0; i < data.length; i++) sum += data[i] * data[i];
          meter.style.width = `${Math.min(100, Math.sqrt(sum / data.length) * 400)}%`;
          requestAnimationFrame(tick);
        };
        requestAnimationFrame(tick);
      } catch (e) { /* the meter is a nicety; audio still plays */ }
    }

    level() {
      const call = this.call;
      if (!call || !call.analyser) return 0;
      const data = new Float32Array(call.analyser.fftSize);
      call.analyser.getFloatTimeDomainData(data);
      let sum = 0;
      for (let i = 0; i < data.length; i++) sum += data[i] * data[i];
      return Math.sqrt(sum / data.length);
    }

    async rtcStats() {
      const pc = this.call && this.call.pc;
      if (!pc) return null;
      const out = {};
      (await pc.getStats()).forEach((r) => {
        if (r.type === "inbound-rtp" && r.kind === "audio") out.inbound = { bytesReceived: r.bytesReceived, packetsReceived: r.packetsReceived };
        if (r.type === "outbound-rtp" && r.kind === "audio") out.outbound = { bytesSent: r.bytesSent, packetsSent: r.packetsSent };
      });
      return out;
    }

    // --- messages from the call (same JSON on the data channel and the WebSocket) ------------------
    onMessage(call, text) {
      if (call !== this.call) return;
      let msg;
      try { msg = JSON.parse(text); } catch (e) { return; }
      if (!msg || typeof msg.type !== "string") return;
      this.stats.messages.push(msg.type);
      this.emit("message", msg);
      switch (msg.type) {
        case "state":
          if (msg.state === "ended") call.ended = true;
          this.setState(msg.state);
          break;
        case "partial":
          this.$("cc-partial").textContent = msg.text || "";
          break;
        case "transcript":
          if (msg.speaker === "caller") this.$("cc-partial").textContent = "";
          this.addCaption(msg);
          break;
        case "clear":
          this.flushPlayback(call);
          break;
        case "red_flag":
          this.showBanner(msg);
          break;
        case "outcome":
          call.outcome = Object.assign(call.outcome || {}, msg);
          if (msg.disposition === "emergency_ambulance" || msg.disposition === "emergency") this.showBanner({ level: msg.disposition, emergency_number: msg.emergency_number });
          break;
        case "ended":
          call.ended = true;
          if (msg.emergency_number) this.emergencyNumber = msg.emergency_number;
          call.outcome = Object.assign({}, call.outcome || {}, msg.result || {});
          this.finish(null, "ended");
          break;
        case "hangup":
          call.ended = true;
          this.finish(null, "ended");
          break;
        case "error":
          if (msg.code === "server_restart") { call.restart = true; this.finish(this.t.restart, "idle"); }
          else if (msg.code === "busy") this.finish(this.t.busy, "idle");
          else if (msg.code === "server_error") this.finish(this.t.serverError, "idle");
          else if (msg.code === "unauthorised" || msg.code === "start_timeout") this.finish(this.t.connFailed, "idle");
          break;
        default:
          break;
      }
    }

    addCaption(msg) {
      const t = this.t;
      const p = document.createElement("p");
      p.className = msg.speaker === "caller" ? "caller" : "bot";
      const who = document.createElement("b");
      who.textContent = `${msg.speaker === "caller" ? t.you : t.bot}:`;
      p.append(who);
      let text = msg.text || "";
      if (msg.speaker === "bot" && msg.interrupted) text = `${msg.heard_text || ""} ${t.heardCut}`.trim();
      p.append(document.createTextNode(text));
      const box = this.$("cc-captions");
      box.append(p);
      box.scrollTop = box.scrollHeight;
    }

    showBanner(msg) {
      const t = this.t;
      const n = msg.emergency_number || this.emergencyNumber;
      if (msg.emergency_number) this.emergencyNumber = msg.emergency_number;
      const banner = this.$("cc-banner");
      const link = this.$("cc-banner-call");
      const level = msg.level || "emergency_ambulance";
      if (level === "nurse") {
        if (!banner.hidden && !banner.classList.contains("nurse")) return; // never downgrade an alarm
        banner.className = "banner nurse";
        this.$("cc-banner-text").textContent = t.bannerNurse;
        link.hidden = true;
      } else {
        banner.className = "banner";
        this.$("cc-banner-text").textContent = level === "emergency" ? t.bannerEmergency(n) : t.bannerAmbulance(n);
        link.hidden = false;
        link.href = `tel:${n}`;
        link.textContent = t.callNow(n);
      }
      banner.hidden = false;
      this.emit("redflag", { level, emergency_number: n, red_flags: msg.red_flags || [] });
    }

    showOutcome(result) {
      const t = this.t;
      const box = this.$("cc-outcome");
      const disp = result.disposition;
      const plain = (v) => (Array.isArray(v) ? v.join(" ") : typeof v === "string" ? v : "");
      this.$("cc-disp").textContent = (disp && t.dispositions[disp]) || plain(result.disposition_text) || "";
      const dept = plain(result.department_name || result.department);
      this.$("cc-dept").textContent = dept ? `${t.department}: ${dept}` : "";
      const adviceBox = this.$("cc-advice");
      adviceBox.textContent = "";
      const advice = [].concat(result.advice || [], result.safety_net || []).filter((a) => typeof a === "string" && a);
      if (advice.length) {
        const h = document.createElement("p");
        h.textContent = `${t.advice}:`;
        const ul = document.createElement("ul");
        for (const a of advice) { const li = document.createElement("li"); li.textContent = a; ul.append(li); }
        adviceBox.append(h, ul);
      }
      this.$("cc-safety").textContent = t.safetyNet(this.emergencyNumber);
      if (disp === "emergency_ambulance" || disp === "emergency") this.showBanner({ level: disp });
      box.hidden = false;
      box.focus();
      this.emit("ended", result);
    }

    // --- ending -----------------------------------------------------------------------------------
    hangUp() {
      const call = this.call;
      if (!call) return;
      const bye = JSON.stringify({ type: "end" });
      try {
        if (call.dc && call.dc.readyState === "open") call.dc.send(bye);
        else if (call.ws && call.ws.readyState === 1) call.ws.send(bye);
        else { this.finish(null, "ended"); return; }
      } catch (e) { this.finish(null, "ended"); return; }
      call.hangingUp = true;
      this.setState("ended");
      // the server answers with the outcome and closes; don't wait for ever
      setTimeout(() => { if (this.call === call) this.finish(null, "ended"); }, 4000);
    }

    onClosed(call, closeEvent) {
      if (call !== this.call || call.closed) return;
      if (call.ended || call.hangingUp) { this.finish(null, "ended"); return; }
      const code = closeEvent ? closeEvent.code : 0;
      if (code === 1013) { this.finish(this.t.busy, "idle"); return; } // try again later: all lines busy
      const restart = code === 1012 || code === 1001;
      this.finish(restart || call.restart ? this.t.restart : this.t.connLost, "idle");
    }

    finish(message, state) {
      const call = this.call;
      // the outcome: from the final `ended` message, else the last `outcome` of the call (a socket
      // may close before the final message reaches us)
      if (call && state === "ended" && call.outcome && !call.closed) this.showOutcome(call.outcome);
      if (call) {
        call.closed = true;
        for (const f of call.cleanup.splice(0).reverse()) { try { f(); } catch (e) { /* closing anyway */ } }
        if (call.mic) call.mic.getTracks().forEach((tr) => tr.stop());
        this.flushPlayback(call);
      }
      this.call = null;
      this.$("cc-partial").textContent = "";
      if (message) this.notice(message);
      this.$("cc-consent").hidden = state === "ended";
      this.setState(state === "ended" ? "ended" : "idle");
      this.render();
    }
  }

  const host = document.createElement("carecall-widget");
  host.style.display = "block";
  const target = opt.target && document.querySelector(opt.target);
  if (target) target.append(host);
  else script.after(host);
  new CareCallWidget(host);
})();

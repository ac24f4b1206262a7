// "Take over" on a live call's page: this browser joins the call's audio over WebRTC (the worker
// that holds the call answers the offer), plays the caller, and sends the nurse's microphone.
// In a cluster the page names that worker (data-worker): `?worker=` lets nginx route the offer and the
// hand-back/end to it, whichever worker served this page.
(function () {
  "use strict";
  function start() {
    const box = document.getElementById("takeover");
    if (!box) return;
    const callId = box.dataset.callId, csrf = box.dataset.csrf, worker = box.dataset.worker || "";
    const status = document.getElementById("takeover-status");
    const buttons = {
      start: document.getElementById("takeover-start"),
      back: document.getElementById("takeover-handback"),
      end: document.getElementById("takeover-end"),
    };
    let pc = null, mic = null;

    function say(text) { status.textContent = text; }
    function joined(on) {
      buttons.start.hidden = on;
      buttons.back.hidden = !on;
      buttons.end.hidden = !on;
      box.dataset.state = on ? "nurse" : "bot";
    }
    async function post(path, body) {
      const query = worker ? "?worker=" + encodeURIComponent(worker) : "";
      const r = await fetch("/console/calls/" + encodeURIComponent(callId) + path + query, {
        method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(Object.assign({ csrf_token: csrf }, body || {})),
      });
      if (r.status === 502 || r.status === 504) {  // nginx: the carrying worker does not answer
        throw new Error("the worker carrying this call (" + (worker || "?") + ") cannot be reached; it may have stopped");
      }
      if (!r.ok) throw new Error((await r.json().catch(() => ({}))).detail || r.statusText);
      return r.json();
    }
    function leave() {
      if (pc) pc.close();
      if (mic) mic.getTracks().forEach((t) => t.stop());
      pc = null; mic = null;
      joined(false);
    }

    buttons.start.addEventListener("click", async () => {
      buttons.start.disabled = true;
      say("Connecting…");
      try {
        mic = await navigator.mediaDevices.getUserMedia({ audio: true });
        pc = new RTCPeerConnection({ iceServers: [] });
        mic.getTracks().forEach((t) => pc.addTrack(t, mic));
        pc.addTransceiver("audio", { direction: "recvonly" });
        pc.ontrack = (e) => { document.getElementById("takeover-audio").srcObject = e.streams[0] || new MediaStream([e.track]); };
        await pc.setLocalDescription(await pc.createOffer());
        await new Promise((resolve) => {
          if (pc.iceGatheringState === "complete") return resolve();
          pc.addEventListener("icegatheringstatechange", () => { if (pc.iceGatheringState === "complete") resolve(); });
        });
        const answer = await post("/takeover", { sdp: pc.localDescription.sdp });
        await pc.setRemoteDescription(answer);
        joined(true);
        say("You have the call. CareCall is silent.");
      } catch (err) {
        leave();
        say("Could not take over: " + err.message);
      } finally {
        buttons.start.disabled = false;
      }
    });
    buttons.back.addEventListener("click", async () => {
      try { await post("/takeover/handback"); leave(); say("Handed back to CareCall."); }
      catch (err) { say("Could not hand back: " + err.message); }
    });
    buttons.end.addEventListener("click", async () => {
      try { await post("/takeover/end"); leave(); say("The call was ended."); }
      catch (err) { say("Could not end the call: " + err.message); }
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

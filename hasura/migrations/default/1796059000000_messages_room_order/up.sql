-- A room's messages commit in `seq` order, so a reader that has seen seq N of a room has seen
-- every earlier message of that room: the MCP backend's wait_for_messages keeps one position
-- per room and never skips a message that committed late (a plain identity column hands out
-- seq before commit, so two concurrent senders could commit 11 before 10).
-- The insert takes a per-room transaction lock and only then draws seq; the lock is held
-- until commit. Cost: sends to ONE room are serialised from their insert to their commit
-- (Synapse serialises event persistence per room too); different rooms do not wait.
CREATE FUNCTION chat.messages_room_order() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- 1886350957: this lock's class ("phen"); the room's hash picks the lock.
    PERFORM pg_advisory_xact_lock(1886350957, hashtext(NEW.room_id::text));
    NEW.seq := nextval(pg_get_serial_sequence('chat.messages', 'seq'));
    RETURN NEW;
END
$$;

CREATE TRIGGER messages_room_order BEFORE INSERT ON chat.messages
    FOR EACH ROW EXECUTE FUNCTION chat.messages_room_order();

DROP TRIGGER IF EXISTS messages_room_order ON chat.messages;
DROP FUNCTION IF EXISTS chat.messages_room_order();

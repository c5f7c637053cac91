import{a,b,c}from"./c-XT7GU3VN.js";import"./c-KSRH26PK.js";import"./c-XP5XKPJ4.js";export{a as Forgot,c as Reset,b as useLinkToken};

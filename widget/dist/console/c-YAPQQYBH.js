var e=o=>o==="owner"||o==="admin",n=o=>o!=="viewer";export{e as a,n as b};
